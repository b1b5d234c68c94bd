//! Migration of an `EmqxEnterprise` v1beta4 manifest (EMQX 4.4) to an `EMQX`
//! v2beta1 manifest (EMQX 5): the way out of v1beta4 the Go operator never
//! offered (#653). It is a new cluster, not an in-place upgrade: EMQX 5 cannot
//! read EMQX 4 data or configuration, so the caller must name an EMQX 5 image,
//! and every field without an EMQX 5 meaning is listed, not silently dropped.

use crate::conversion_data::diff;
use crate::convert::data_to_emqx_config;
use crate::dynamic::{ObjectError, identify, parse};
use crate::image::{split_tag, tag_version};
use crate::names::{ANNOTATION_CONVERSION_DATA, headless_service_name};
use crate::served::Served;
use crate::{v1beta4, v2beta1, validate};
use serde_json::Value;

/// What the caller decides.
#[derive(Clone, Debug, Default)]
pub struct MigrateOptions {
    /// The EMQX 5 image of the new cluster (required: 4.4 images cannot run
    /// as `EMQX`).
    pub image: Option<String>,
    /// A new name for the `EMQX` object (default: the old name).
    pub name: Option<String>,
}

/// A field of the old object that the new one does not carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmappedField {
    /// Field path, e.g. `spec.license`.
    pub path: String,
    /// Why it is not carried over and what to do instead.
    pub reason: String,
}

/// The result of a migration.
#[derive(Clone, Debug)]
pub struct Migration {
    /// The `EMQX` v2beta1 object.
    pub object: Value,
    /// Fields of the v1beta4 object with no counterpart.
    pub unmapped: Vec<UnmappedField>,
    /// Things the user must know (name clashes, warnings of the new object).
    pub notes: Vec<String>,
}

/// Why a manifest cannot be migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Not an `EmqxEnterprise` v1beta4 object, or it does not parse.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// Something only the user can decide.
    #[error("{0}")]
    Refused(String),
}

/// Why known v1beta4-only fields are not carried over.
fn reason_for(path: &str) -> &'static str {
    const REASONS: &[(&str, &str)] = &[
        (
            "/spec/license",
            "EMQX 5 licenses are configured in config.data (license { key = \"...\" }); the EMQX 4 license file does not apply",
        ),
        (
            "/spec/template/spec/reloaderImage",
            "EMQX 5 needs no config reloader sidecar",
        ),
        (
            "/spec/template/spec/emqxContainer/emqxConfig",
            "EMQX 4 configuration keys do not apply to EMQX 5; write the EMQX 5 equivalent in config.data (HOCON)",
        ),
        (
            "/spec/template/spec/emqxContainer/emqxACL",
            "EMQX 5 configures authorization in config.data (authorization { ... }) or the dashboard",
        ),
        (
            "/spec/template/spec/emqxContainer/name",
            "the EMQX container is always named emqx",
        ),
        (
            "/spec/template/spec/ephemeralContainers",
            "ephemeral containers are added with kubectl debug, not in templates",
        ),
        (
            "/spec/persistent/metadata",
            "the data PVC is named by the operator",
        ),
        (
            "/status",
            "status is rebuilt by the operator for the new cluster",
        ),
    ];
    REASONS
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map_or("no counterpart in EMQX v2beta1", |(_, reason)| reason)
}

/// Turns an `EmqxEnterprise` v1beta4 object into an `EMQX` v2beta1 object.
pub fn migrate_v1beta4(obj: &Value, options: &MigrateOptions) -> Result<Migration, MigrateError> {
    let served = identify(obj)?;
    if served != Served::EnterpriseV1beta4 {
        return Err(MigrateError::Refused(format!(
            "expected an apps.emqx.io/v1beta4 EmqxEnterprise, got {} {}",
            served.api_version(),
            served.kind()
        )));
    }
    let old: v1beta4::EmqxEnterprise = parse(obj)?;
    let name = old.metadata.name.clone().unwrap_or_default();
    let old_image = old
        .spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.emqx_container.as_ref())
        .map(|c| c.image.clone())
        .unwrap_or_default();

    let image = match &options.image {
        Some(image) => image.clone(),
        None => {
            return Err(MigrateError::Refused(format!(
                "{name} runs EMQX {} (4.x), which cannot run as an EMQX v2beta1 cluster: EMQX 5 cannot read EMQX 4 data \
                 or configuration, so migrating means a new cluster. Pass --image with an EMQX 5.1.1+ image, e.g. \
                 --image emqx/emqx-enterprise:5.10.0",
                old_image.version
            )));
        }
    };
    let major = split_tag(&image).1.and_then(tag_version).map(|v| v[0]);
    if major.is_some_and(|m| m < 5) {
        return Err(MigrateError::Refused(format!(
            "--image {image} is EMQX 4; the EMQX kind needs EMQX 5.1.1 or later"
        )));
    }

    // The field-by-field mapping, and what it could not carry.
    let hub: v2beta1::EmqxEnterprise = old.clone().into();
    let back: v1beta4::EmqxEnterprise = hub.clone().into();
    let mut original = obj.clone();
    strip_server_metadata(&mut original);
    let mut back_json =
        serde_json::to_value(&back).map_err(|e| MigrateError::Refused(e.to_string()))?;
    strip_server_metadata(&mut back_json);
    let mut unmapped: Vec<UnmappedField> = diff(&original, &back_json)
        .into_iter()
        .filter(|e| e.value.is_some())
        .map(|e| UnmappedField {
            path: pointer_to_path(&e.path),
            reason: reason_for(&e.path).to_owned(),
        })
        .collect();

    let mut emqx: v2beta1::EMQX = hub.into();
    if emqx.status.take().is_some() {
        unmapped.push(UnmappedField {
            path: "status".into(),
            reason: reason_for("/status").to_owned(),
        });
    }
    emqx.spec.image = image;
    // emqxConfig travelled as `key = "value"` lines; EMQX 5 does not know them.
    if let Some(keys) = emqx
        .spec
        .config
        .take()
        .and_then(|c| c.data)
        .and_then(|d| data_to_emqx_config(&d))
        .filter(|keys| !keys.is_empty())
    {
        unmapped.push(UnmappedField {
            path: "spec.template.spec.emqxContainer.emqxConfig".into(),
            reason: format!(
                "{} ({})",
                reason_for("/spec/template/spec/emqxContainer/emqxConfig"),
                keys.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    unmapped.push(UnmappedField {
        path: "spec.template.spec.emqxContainer.image".into(),
        reason: format!(
            "EMQX 4 image {}{}{} replaced by the --image given",
            old_image
                .repository
                .as_deref()
                .map(|r| format!("{r}:"))
                .unwrap_or_default(),
            old_image.prefix.as_deref().unwrap_or_default(),
            old_image.version
        ),
    });
    unmapped.sort_by(|a, b| a.path.cmp(&b.path));
    unmapped.dedup_by(|a, b| a.path == b.path);

    let new_name = options.name.clone().unwrap_or_else(|| name.clone());
    emqx.metadata.name = Some(new_name.clone());
    let mut notes = Vec::new();
    if new_name == name {
        notes.push(format!(
            "the new EMQX object has the old name {name}: its Service {} clashes with the old cluster's while both exist; \
             delete the EmqxEnterprise first or pass --name",
            headless_service_name(&name)
        ));
    }
    notes.push("the new cluster starts empty: retained messages, sessions and EMQX 4 data are not migrated".into());
    let verdict = validate::validate_hub(&emqx.spec, None, None, false);
    for error in &verdict.errors {
        notes.push(format!("the new object is not valid yet: {error}"));
    }
    notes.extend(verdict.warnings);

    let mut object =
        serde_json::to_value(&emqx).map_err(|e| MigrateError::Refused(e.to_string()))?;
    strip_server_metadata(&mut object);
    Ok(Migration {
        object,
        unmapped,
        notes,
    })
}

/// Drops what the API server owns (and the conversion stash), so the output
/// can be applied as a new object.
fn strip_server_metadata(obj: &mut Value) {
    let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for key in [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
        "ownerReferences",
        "finalizers",
    ] {
        metadata.remove(key);
    }
    if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        annotations.remove(ANNOTATION_CONVERSION_DATA);
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
}

fn pointer_to_path(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: failing loudly is the point
mod tests {
    use super::*;
    use serde_json::json;

    fn seed() -> Value {
        json!({
            "apiVersion": "apps.emqx.io/v1beta4", "kind": "EmqxEnterprise",
            "metadata": {"name": "emqx-ee", "namespace": "default", "uid": "u", "resourceVersion": "9"},
            "spec": {
                "replicas": 3,
                "license": {"stringData": "LICENSE"},
                "blueGreenUpdate": {"initialDelaySeconds": 5, "evacuationStrategy": {"waitTakeover": 5, "connEvictRate": 10, "sessEvictRate": 10}},
                "template": {"spec": {"emqxContainer": {
                    "image": {"repository": "emqx/emqx-ee", "version": "4.4.14"},
                    "emqxConfig": {"listener.tcp.external.max_connections": "1024"}
                }}},
                "serviceTemplate": {"spec": {"type": "NodePort"}}
            },
            "status": {"replicas": 3}
        })
    }

    #[test]
    fn needs_an_emqx5_image() {
        let err = migrate_v1beta4(&seed(), &MigrateOptions::default()).unwrap_err();
        assert!(err.to_string().contains("--image"), "{err}");
        let options = MigrateOptions {
            image: Some("emqx/emqx-ee:4.4.19".into()),
            name: None,
        };
        assert!(migrate_v1beta4(&seed(), &options).is_err());
    }

    #[test]
    fn maps_the_blue_green_settings_and_lists_what_it_drops() {
        let options = MigrateOptions {
            image: Some("emqx/emqx-enterprise:5.10.0".into()),
            name: Some("emqx".into()),
        };
        let m = migrate_v1beta4(&seed(), &options).unwrap();
        assert_eq!(m.object["apiVersion"], "apps.emqx.io/v2beta1");
        assert_eq!(m.object["kind"], "EMQX");
        assert_eq!(
            m.object["metadata"],
            json!({"name": "emqx", "namespace": "default"})
        );
        assert_eq!(m.object["spec"]["image"], "emqx/emqx-enterprise:5.10.0");
        assert_eq!(m.object["spec"]["coreTemplate"]["spec"]["replicas"], 3);
        assert_eq!(
            m.object["spec"]["updateStrategy"],
            json!({"type": "Recreate", "initialDelaySeconds": 5, "evacuationStrategy": {"waitTakeover": 5, "connEvictRate": 10, "sessEvictRate": 10}, "promotion": "Automatic", "guard": {"enabled": true, "connectionRecovery": {"minPercent": 80, "windowSeconds": 60}, "connectFailures": {"maxPerMinute": 60}}})
        );
        assert_eq!(
            m.object["spec"]["listenersServiceTemplate"]["spec"]["type"],
            "NodePort"
        );
        assert!(m.object.get("status").is_none());
        assert!(m.object["spec"].get("config").is_none());
        let paths: Vec<_> = m.unmapped.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.license",
                "spec.template.spec.emqxContainer.emqxConfig",
                "spec.template.spec.emqxContainer.image",
                "status",
            ]
        );
    }

    #[test]
    fn refuses_other_kinds() {
        let obj = json!({"apiVersion": "apps.emqx.io/v2beta1", "kind": "EMQX", "metadata": {}, "spec": {"image": "emqx:5.8.0"}});
        assert!(migrate_v1beta4(&obj, &MigrateOptions::default()).is_err());
    }
}

/// What the `migrate` command line (`emqx-migrate`, `kubectl emqx migrate`)
/// prints and returns for one input document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliOutcome {
    /// The migrated manifest (YAML), for stdout; empty on failure.
    pub stdout: String,
    /// Lines for stderr: fields not migrated, notes, errors.
    pub stderr: Vec<String>,
    /// 0 migrated, 1 unreadable or unwritable, 2 cannot migrate, 3 `--strict`
    /// with fields left behind.
    pub exit: u8,
}

/// Input larger than this is refused: a manifest is a few KiB.
pub const MAX_CLI_INPUT: usize = 4 << 20;

/// Migrates one YAML document, as the command line does (`program` prefixes
/// its error lines).
pub fn run_cli(program: &str, input: &str, options: &MigrateOptions, strict: bool) -> CliOutcome {
    let fail = |exit: u8, line: String| CliOutcome {
        stdout: String::new(),
        stderr: vec![line],
        exit,
    };
    if input.len() > MAX_CLI_INPUT {
        return fail(
            1,
            format!("{program}: input larger than {MAX_CLI_INPUT} bytes"),
        );
    }
    let object: Value = match serde_saphyr::from_str(input) {
        Ok(object) => object,
        Err(e) => return fail(1, format!("{program}: stdin is not one YAML document: {e}")),
    };
    let migration = match migrate_v1beta4(&object, options) {
        Ok(migration) => migration,
        Err(e) => return fail(2, format!("{program}: cannot migrate: {e}")),
    };
    let stdout = match serde_saphyr::to_string(&migration.object) {
        Ok(yaml) => yaml,
        Err(e) => return fail(1, format!("{program}: writing YAML: {e}")),
    };
    let mut stderr: Vec<String> = migration
        .unmapped
        .iter()
        .map(|f| format!("not migrated: {}: {}", f.path, f.reason))
        .chain(migration.notes.iter().map(|n| format!("note: {n}")))
        .collect();
    let mut exit = 0;
    if strict && !migration.unmapped.is_empty() {
        stderr.push(format!(
            "{program}: --strict: {} field(s) not migrated",
            migration.unmapped.len()
        ));
        exit = 3;
    }
    CliOutcome {
        stdout,
        stderr,
        exit,
    }
}

/// The `migrate` command line's flags, shared by `emqx-migrate` and
/// `kubectl emqx migrate`.
#[derive(clap::Args, Debug, Clone)]
pub struct CliArgs {
    /// EMQX 5.1.1+ image of the new cluster (EMQX 4.4 cannot run as EMQX v2beta1).
    #[arg(long)]
    pub image: Option<String>,
    /// Name of the new EMQX object (default: the old name).
    #[arg(long)]
    pub name: Option<String>,
    /// Fail (exit 3) if any field cannot be carried over.
    #[arg(long)]
    pub strict: bool,
}

impl CliArgs {
    /// Migrates stdin to stdout (notes and errors to stderr) and returns
    /// the exit code of [`run_cli`]; `program` prefixes the error lines.
    pub fn run_stdio(&self, program: &str) -> u8 {
        use std::io::Read as _;
        let mut input = String::new();
        if let Err(e) = std::io::stdin()
            .take(MAX_CLI_INPUT as u64 + 1)
            .read_to_string(&mut input)
        {
            eprintln!("{program}: reading stdin: {e}");
            return 1;
        }
        let options = MigrateOptions {
            image: self.image.clone(),
            name: self.name.clone(),
        };
        let outcome = run_cli(program, &input, &options, self.strict);
        print!("{}", outcome.stdout);
        for line in &outcome.stderr {
            eprintln!("{line}");
        }
        outcome.exit
    }
}
