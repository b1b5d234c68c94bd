//! The real `emqx-webhook` binary as a host process for the sandbox,
//! registered by URL on 127.0.0.1: the conversion stanza of both CRDs and
//! the Validating/Mutating webhook configurations point at
//! `https://127.0.0.1:<port>`, and the binary's self-managed certificate
//! mode (CA in a Secret, `--extra-san 127.0.0.1`) injects the caBundle into
//! all four, exactly as it does for the chart's Service registration.
//!
//! Needed by every test that stores or reads `EmqxEnterprise` objects: that
//! CRD stores v1beta4 and serves v2beta1, so the API server converts through
//! the webhook on every read in the other version.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::Sandbox;
use crate::operator::project_binary;

/// The CRDs whose conversion the webhook serves.
pub const CRDS: [&str; 2] = ["emqxes.apps.emqx.io", "emqxenterprises.apps.emqx.io"];
const VALIDATING: &str = "emqx-operator-validating";
const MUTATING: &str = "emqx-operator-mutating";

/// A running `emqx-webhook`; ended (by its pid) on [`WebhookProcess::stop`]
/// or Drop.
pub struct WebhookProcess {
    child: Child,
    /// `https://127.0.0.1:<port>`.
    pub base_url: String,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl Drop for WebhookProcess {
    fn drop(&mut self) {
        // Only the process this helper started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admission_configuration(kind: &str, name: &str, url: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": [{
            "name": format!("{}.apps.emqx.io", if kind.starts_with("Validating") { "validate" } else { "mutate" }),
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "clientConfig": {"url": url},
            "rules": [{
                "apiGroups": ["apps.emqx.io"],
                "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["emqxes", "emqxenterprises"]
            }]
        }]
    })
}

fn has_ca_bundle(value: &Value, pointer: &str) -> bool {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

impl WebhookProcess {
    /// Builds (if needed) and starts the binary, registers it by URL for the
    /// CRDs (already installed) and for admission, and waits until it has
    /// injected its CA everywhere (bounded: 90 s).
    pub async fn start(sandbox: &Sandbox) -> Result<WebhookProcess> {
        let binary = tokio::task::spawn_blocking(|| {
            project_binary::build_operator_binaries().map(|b| b.webhook)
        })
        .await
        .context("build task")??;
        let port = project_binary::free_port()?;
        let base_url = format!("https://127.0.0.1:{port}");
        let client = sandbox.client();

        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in CRDS {
            let patch: json_patch::Patch = serde_json::from_value(json!([{
                "op": "replace",
                "path": "/spec/conversion/webhook/clientConfig",
                "value": {"url": format!("{base_url}/convert")}
            }]))?;
            crds.patch(crd, &PatchParams::default(), &Patch::<()>::Json(patch))
                .await
                .with_context(|| format!("pointing {crd}'s conversion at {base_url}"))?;
        }
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        validating
            .create(
                &PostParams::default(),
                &serde_json::from_value(admission_configuration(
                    "ValidatingWebhookConfiguration",
                    VALIDATING,
                    &format!("{base_url}/validate"),
                ))?,
            )
            .await
            .context("creating the validating configuration")?;
        mutating
            .create(
                &PostParams::default(),
                &serde_json::from_value(admission_configuration(
                    "MutatingWebhookConfiguration",
                    MUTATING,
                    &format!("{base_url}/mutate"),
                ))?,
            )
            .await
            .context("creating the mutating configuration")?;

        let dir = sandbox
            .state_dir()
            .map_or_else(std::env::temp_dir, |d| d.join("logs"));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("emqx-webhook.log");
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&binary)
            .env("KUBECONFIG", sandbox.kubeconfig())
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--cert-mode",
                "self-managed",
                "--namespace",
                "default",
                "--extra-san",
                "127.0.0.1",
                "--cert-refresh-seconds",
                "2",
                "--validating-configuration",
                VALIDATING,
                "--mutating-configuration",
                MUTATING,
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut process = WebhookProcess {
            child,
            base_url,
            log,
        };

        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "emqx-webhook exited ({status}): {}",
                    crate::control_plane::process::log_tail(&process.log, 20)
                );
            }
            let mut injected = true;
            for crd in CRDS {
                let v = serde_json::to_value(crds.get(crd).await?)?;
                injected &= has_ca_bundle(&v, "/spec/conversion/webhook/clientConfig/caBundle");
            }
            let v = serde_json::to_value(validating.get(VALIDATING).await?)?;
            injected &= has_ca_bundle(&v, "/webhooks/0/clientConfig/caBundle");
            let v = serde_json::to_value(mutating.get(MUTATING).await?)?;
            injected &= has_ca_bundle(&v, "/webhooks/0/clientConfig/caBundle");
            if injected {
                return Ok(process);
            }
            if Instant::now() > deadline {
                bail!(
                    "emqx-webhook did not inject its CA within 90 s: {}",
                    crate::control_plane::process::log_tail(&process.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends the process (SIGKILL; it holds no state worth a grace period).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
