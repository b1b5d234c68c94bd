//! What an EMQX build can do, told from its image reference the way users
//! and the operators name images: `emqx/emqx` is open source up to 5.8 and
//! the single (Enterprise code base) edition from 5.9; `emqx/emqx-enterprise`
//! and `emqx/emqx-ee` are Enterprise. Images under other names (a private
//! mirror, a digest) are not judged.

use crate::image::{split_tag, tag_version};

/// Why `image` cannot run replicant nodes, if it certainly cannot.
///
/// Open source 5.0–5.7 accepts `node.role = replicant`
/// (`apps/emqx_conf/src/emqx_conf_schema.erl`, v5.7.2: `enum([core, replicant])`).
/// From 5.8.0 only the Enterprise schema injects `replicant`
/// (`apps/emqx_enterprise/src/emqx_enterprise_schema.erl`), so an
/// open-source 5.8 node with that role fails its config check at boot
/// (v5.8.1–v5.8.9: "Node role 'replicant' is only allowed in Enterprise
/// edition since 5.8.0"; v5.8.0: not an allowed enum value) and its
/// container restarts without end. 5.9 and later — e5.9.0 … e6.0.1, which
/// `emqx/emqx:5.9+` images carry — allow replicants again.
pub fn replicant_refusal(image: &str) -> Option<String> {
    if image.contains('@') {
        return None;
    }
    let (name, tag) = split_tag(image);
    let repository = name.rsplit('/').next().unwrap_or(name);
    if repository != "emqx" {
        return None;
    }
    let version = tag_version(tag?)?;
    (version.first() == Some(&5) && version.get(1) == Some(&8)).then(|| {
        format!(
            "open-source EMQX 5.8 ({image}) does not run replicant nodes: it refuses node.role=replicant at boot (\"Node role 'replicant' is only allowed in Enterprise edition since 5.8.0\"); use emqx/emqx-enterprise:{tag}, EMQX 5.9 or later, or no replicants (replicas 0)",
            tag = tag.unwrap_or_default()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_source_5_8_refuses_replicants() {
        for image in [
            "emqx/emqx:5.8.0",
            "emqx/emqx:5.8.9",
            "docker.io/emqx/emqx:5.8.9-alpine",
            "registry:5000/emqx/emqx:5.8",
        ] {
            let why = replicant_refusal(image).expect(image);
            assert!(why.contains(image), "{why}");
        }
        for image in [
            "emqx/emqx:5.7.2",
            "emqx/emqx:5.0.26",
            "emqx/emqx:5.9.0",
            "emqx/emqx:6.0.1",
            "emqx/emqx-enterprise:5.8.9",
            "emqx/emqx-ee:4.4.19",
            "mirror/broker:5.8.9",
            "emqx/emqx@sha256:00",
            "emqx/emqx:latest",
            "emqx/emqx",
            "",
        ] {
            assert_eq!(replicant_refusal(image), None, "{image}");
        }
    }
}
