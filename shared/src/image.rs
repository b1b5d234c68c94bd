//! Image references: v1beta4's parts ↔ v2's string, and the version in a tag.

/// An image reference in v1beta4's parts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageParts {
    /// Registry host (`docker.io`, `registry:5000`).
    pub registry: Option<String>,
    /// Repository path (`emqx/emqx-ee`).
    pub repository: Option<String>,
    /// Tag prefix.
    pub prefix: Option<String>,
    /// The version part of the tag.
    pub version: String,
    /// Tag suffix.
    pub suffix: Option<String>,
}

/// `registry/repository:prefix+version+suffix`, with registry and repository
/// path-joined so an empty registry vanishes (as the Go operator does).
pub fn join_image(parts: &ImageParts) -> String {
    let nonempty = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let repo = match (nonempty(&parts.registry), nonempty(&parts.repository)) {
        (Some(r), Some(p)) => format!("{}/{}", r.trim_end_matches('/'), p),
        (None, Some(p)) => p,
        (Some(r), None) => r,
        (None, None) => String::new(),
    };
    let tag = format!(
        "{}{}{}",
        parts.prefix.as_deref().unwrap_or_default(),
        parts.version,
        parts.suffix.as_deref().unwrap_or_default()
    );
    format!("{repo}:{tag}")
}

/// Splits an image string into parts: the first path component is the
/// registry when it looks like a host (has `.` or `:`, or is `localhost`);
/// the whole tag becomes `version`.
pub fn split_image(image: &str) -> ImageParts {
    let (name, tag) = split_tag(image);
    let (registry, repository) = match name.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            (Some(host.to_owned()), rest.to_owned())
        }
        _ => (None, name.to_owned()),
    };
    ImageParts {
        registry,
        repository: (!repository.is_empty()).then_some(repository),
        prefix: None,
        version: tag.unwrap_or_default().to_owned(),
        suffix: None,
    }
}

/// `(name, tag)`: the tag is what follows the last `:` after the last `/`.
pub fn split_tag(image: &str) -> (&str, Option<&str>) {
    let after_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[after_slash..].rfind(':') {
        Some(i) => (
            &image[..after_slash + i],
            Some(&image[after_slash + i + 1..]),
        ),
        None => (image, None),
    }
}

/// The EMQX version a tag names, leniently: `5.1` → `[5, 1]`,
/// `4.4.14-alpine` → `[4, 4, 14]`, `v5.8.0` → `[5, 8, 0]`. `None` if the tag does
/// not start with a number.
pub fn tag_version(tag: &str) -> Option<Vec<u64>> {
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let core = tag.split(['-', '+', '_']).next().unwrap_or_default();
    let mut parts = Vec::new();
    for piece in core.split('.').take(3) {
        parts.push(piece.parse::<u64>().ok()?);
    }
    (!parts.is_empty()).then_some(parts)
}

/// Whether an image runs EMQX 4.x (the `/api/v4` generation, env-configured).
/// Anything unparsable (`latest`, a digest) is taken as the current EMQX.
pub fn is_emqx4(image: &str) -> bool {
    let (_, tag) = split_tag(image);
    tag.and_then(tag_version)
        .and_then(|v| v.first().copied())
        .is_some_and(|major| major == 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_like_the_go_operator() {
        let parts = ImageParts {
            registry: Some("docker.io".into()),
            repository: Some("emqx/emqx-ee".into()),
            version: "4.4.14".into(),
            ..Default::default()
        };
        assert_eq!(join_image(&parts), "docker.io/emqx/emqx-ee:4.4.14");
        let bare = ImageParts {
            registry: Some(String::new()),
            ..parts
        };
        assert_eq!(join_image(&bare), "emqx/emqx-ee:4.4.14");
    }

    #[test]
    fn splits_registry_only_when_it_is_a_host() {
        let p = split_image("docker.io/emqx/emqx-ee:4.4.14");
        assert_eq!(p.registry.as_deref(), Some("docker.io"));
        assert_eq!(p.repository.as_deref(), Some("emqx/emqx-ee"));
        assert_eq!(p.version, "4.4.14");
        let p = split_image("emqx/emqx:5.1");
        assert_eq!(p.registry, None);
        assert_eq!(p.repository.as_deref(), Some("emqx/emqx"));
        let p = split_image("localhost:5000/emqx:5.8.0");
        assert_eq!(p.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(p.version, "5.8.0");
    }

    #[test]
    fn tag_versions() {
        assert_eq!(tag_version("5.1"), Some(vec![5, 1]));
        assert_eq!(tag_version("4.4.14-alpine"), Some(vec![4, 4, 14]));
        assert_eq!(tag_version("latest"), None);
        assert_eq!(
            split_tag("registry:5000/emqx"),
            ("registry:5000/emqx", None)
        );
    }
}
