//! The Grafana-like picture of seed 003: connections per node and the total
//! over the upgrade, as SVG (no font needed) and PNG (needs a TrueType font).

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::series::{ConnectionSeries, short_name};

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The embedded font was rejected by the renderer.
    #[error("the embedded DejaVu Sans font could not be registered")]
    Font,
    /// Drawing or writing failed.
    #[error("drawing {path}: {message}")]
    Draw {
        /// Output path.
        path: String,
        /// Cause.
        message: String,
    },
}

static FONT: OnceLock<bool> = OnceLock::new();

/// Registers the embedded DejaVu Sans once per process: plotters needs a font
/// to lay out text for both SVG and PNG, and a clean machine may have none.
fn ensure_font() -> Result<(), PlotError> {
    let ok = *FONT.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

/// Writes the plot as SVG.
pub fn write_svg(series: &ConnectionSeries, path: &Path, title: &str) -> Result<(), PlotError> {
    ensure_font()?;
    let root = SVGBackend::new(path, (1200, 600)).into_drawing_area();
    draw(root, series, title).map_err(|message| PlotError::Draw {
        path: path.display().to_string(),
        message,
    })
}

/// Writes the plot as PNG.
pub fn write_png(series: &ConnectionSeries, path: &Path, title: &str) -> Result<(), PlotError> {
    ensure_font()?;
    let root = BitMapBackend::new(path, (1200, 600)).into_drawing_area();
    draw(root, series, title).map_err(|message| PlotError::Draw {
        path: path.display().to_string(),
        message,
    })
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    series: &ConnectionSeries,
    title: &str,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let totals = series.totals();
    let x_max = series.rows.last().map_or(1.0, |(t, _)| t.max(1.0));
    let y_max = totals.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("connections")
        .draw()
        .map_err(|x| e(&x))?;
    let total_points: Vec<(f64, f64)> = series
        .rows
        .iter()
        .zip(&totals)
        .map(|((t, _), v)| (*t, *v as f64))
        .collect();
    chart
        .draw_series(LineSeries::new(total_points, BLACK.stroke_width(3)))
        .map_err(|x| e(&x))?
        .label("Total")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(3)));
    for (i, node) in series.nodes.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = series
            .rows
            .iter()
            .map(|(t, counts)| (*t, counts.get(i).copied().unwrap_or(0) as f64))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(short_name(node))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
