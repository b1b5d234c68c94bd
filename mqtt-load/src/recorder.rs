//! The upgrade recorder: connections per node over time as CSV and a plot
//! (SVG and PNG), plus a summary of what clients went through.

pub mod plot;
pub mod series;
pub mod summary;

use std::path::{Path, PathBuf};

pub use plot::PlotError;
pub use series::ConnectionSeries;
pub use summary::Summary;

use crate::LoadReport;

/// Files written for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    /// `connections.csv`.
    pub csv: PathBuf,
    /// `connections.svg`.
    pub svg: PathBuf,
    /// `connections.png`.
    pub png: PathBuf,
    /// `summary.txt`.
    pub summary: PathBuf,
}

/// Why recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Drawing failed.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Writes CSV, SVG, PNG (when a font exists) and the summary into `dir`.
pub fn write_all(report: &LoadReport, dir: &Path, title: &str) -> Result<Artifacts, RecordError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| RecordError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let series = ConnectionSeries::from_samples(&report.samples);
    let csv = dir.join("connections.csv");
    std::fs::write(&csv, series.to_csv()).map_err(io(&csv))?;
    let svg = dir.join("connections.svg");
    plot::write_svg(&series, &svg, title)?;
    let png = dir.join("connections.png");
    plot::write_png(&series, &png, title)?;
    let summary = dir.join("summary.txt");
    std::fs::write(&summary, format!("{}\n", Summary::of(report))).map_err(io(&summary))?;
    Ok(Artifacts {
        csv,
        svg,
        png,
        summary,
    })
}
