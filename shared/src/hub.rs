//! What the reconciler reads from the hub (`EMQX`/`EmqxEnterprise` v2beta1):
//! condition types, and the effective settings with the CRD's defaults
//! applied, for objects that did not pass through the apiserver's defaulting
//! (tests, objects built in code). They agree with [`crate::dynamic::default_object`].

use crate::limits::{DELAY_DEFAULT, RATE_DEFAULT};
use crate::v2beta1::EMQXSpec;

/// Condition types of v2 status (`metav1.Condition`), as upstream names them.
pub mod condition {
    /// The cluster's objects were created.
    pub const INITIALIZED: &str = "Initialized";
    /// A core set of a new revision is being created or scaled.
    pub const CORE_NODES_PROGRESSING: &str = "CoreNodesProgressing";
    /// Every core node of the update revision is ready.
    pub const CORE_NODES_READY: &str = "CoreNodesReady";
    /// A replicant set of a new revision is being created or scaled.
    pub const REPLICANT_NODES_PROGRESSING: &str = "ReplicantNodesProgressing";
    /// Every replicant node of the update revision is ready.
    pub const REPLICANT_NODES_READY: &str = "ReplicantNodesReady";
    /// Traffic goes to the update revision (the Service switch happened).
    pub const AVAILABLE: &str = "Available";
    /// The update revision is current and every node is ready.
    pub const READY: &str = "Ready";
    /// v1beta4: the cluster runs.
    pub const V1BETA4_RUNNING: &str = "Running";
    /// v1beta4: a blue-green upgrade is under way.
    pub const V1BETA4_BLUE_GREEN_UPDATING: &str = "BlueGreenUpdating";
}

/// The blue-green settings of a spec, every default applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlueGreenSettings {
    /// Seconds between all new nodes ready and the Service switch.
    pub initial_delay_seconds: i32,
    /// Seconds to wait for session takeover before removing a node.
    pub wait_takeover: i32,
    /// Connections evicted per second.
    pub conn_evict_rate: i32,
    /// Sessions evicted per second.
    pub sess_evict_rate: i32,
    /// `promotion: Manual`: traffic moves only when the user promotes.
    pub manual_promotion: bool,
    /// The upgrade guard's thresholds; `None` when `guard.enabled: false`.
    pub guard: Option<crate::guard::GuardSettings>,
}

// The limits are small constants; the conversions cannot truncate.
const DELAY: i32 = DELAY_DEFAULT as i32;
const RATE: i32 = RATE_DEFAULT as i32;

impl EMQXSpec {
    /// The blue-green settings with the CRD's defaults (10 s, 10 s, 1000/s,
    /// 1000/s, `Automatic`) where absent.
    pub fn blue_green(&self) -> BlueGreenSettings {
        let strategy = self.update_strategy.clone().unwrap_or_default();
        let evacuation = strategy.evacuation_strategy.unwrap_or_default();
        BlueGreenSettings {
            initial_delay_seconds: strategy.initial_delay_seconds.unwrap_or(DELAY),
            wait_takeover: evacuation.wait_takeover.unwrap_or(DELAY),
            conn_evict_rate: evacuation.conn_evict_rate.unwrap_or(RATE),
            sess_evict_rate: evacuation.sess_evict_rate.unwrap_or(RATE),
            manual_promotion: strategy.promotion.as_deref()
                == Some(crate::v2beta1::PROMOTION_MANUAL),
            guard: strategy.guard.unwrap_or_default().settings(),
        }
    }

    /// Core replicas: 1 without `coreTemplate` (its object default), 2 when
    /// the template omits them (the field default).
    pub fn core_replicas(&self) -> i32 {
        match &self.core_template {
            None => 1,
            Some(t) => t.spec.as_ref().and_then(|s| s.pod.replicas).unwrap_or(2),
        }
    }

    /// Replicant replicas; `None` for a core-only cluster.
    pub fn replicant_replicas(&self) -> Option<i32> {
        self.replicant_template
            .as_ref()
            .map(|t| t.spec.as_ref().and_then(|s| s.replicas).unwrap_or(2))
    }

    /// The Kubernetes cluster domain (`cluster.local` when unset or empty:
    /// an empty domain would make node names end in a dot).
    pub fn cluster_domain(&self) -> &str {
        self.cluster_domain
            .as_deref()
            .filter(|d| !d.is_empty())
            .unwrap_or("cluster.local")
    }

    /// Old revisions to keep (3 by default).
    pub fn revision_history_limit(&self) -> i32 {
        self.revision_history_limit.unwrap_or(3)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: failing loudly is the point
mod tests {
    use crate::dynamic::{default_object, parse};
    use crate::v2beta1::EMQX;
    use serde_json::{Value, json};

    fn raw_and_defaulted(spec: Value) -> (EMQX, EMQX) {
        let obj = json!({"apiVersion": "apps.emqx.io/v2beta1", "kind": "EMQX", "metadata": {"name": "e"}, "spec": spec});
        let defaulted = default_object(&obj).unwrap();
        (parse(&obj).unwrap(), parse(&defaulted).unwrap())
    }

    #[test]
    fn effective_settings_agree_with_schema_defaulting() {
        for spec in [
            json!({"image": "emqx:5.8.0"}),
            json!({"image": "emqx:5.8.0", "updateStrategy": {}}),
            json!({"image": "emqx:5.8.0", "updateStrategy": {"initialDelaySeconds": 5}}),
            json!({"image": "emqx:5.8.0", "updateStrategy": {"promotion": "Manual"}}),
            json!({"image": "emqx:5.8.0", "updateStrategy": {"evacuationStrategy": {"connEvictRate": 7}}}),
            json!({"image": "emqx:5.8.0", "coreTemplate": {}, "replicantTemplate": {"spec": {}}}),
            json!({"image": "emqx:5.8.0", "coreTemplate": {"spec": {"replicas": 5}}}),
        ] {
            let (raw, defaulted) = raw_and_defaulted(spec.clone());
            let explicit = defaulted.spec.update_strategy.clone().unwrap();
            let evacuation = explicit.evacuation_strategy.clone().unwrap();
            let settings = raw.spec.blue_green();
            assert_eq!(
                Some(settings.initial_delay_seconds),
                explicit.initial_delay_seconds,
                "{spec}"
            );
            assert_eq!(
                Some(settings.wait_takeover),
                evacuation.wait_takeover,
                "{spec}"
            );
            assert_eq!(
                Some(settings.conn_evict_rate),
                evacuation.conn_evict_rate,
                "{spec}"
            );
            assert_eq!(
                Some(settings.sess_evict_rate),
                evacuation.sess_evict_rate,
                "{spec}"
            );
            assert_eq!(
                settings.manual_promotion,
                explicit.promotion.as_deref() == Some("Manual"),
                "{spec}"
            );
            assert!(explicit.promotion.is_some(), "defaulted: {spec}");
            assert_eq!(raw.spec.blue_green(), defaulted.spec.blue_green(), "{spec}");
            // Where the schema fills replicas, the helper agrees with it.
            if let Some(replicas) = defaulted
                .spec
                .core_template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.pod.replicas)
            {
                assert_eq!(raw.spec.core_replicas(), replicas, "{spec}");
            }
            if let Some(replicas) = defaulted
                .spec
                .replicant_template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.replicas)
            {
                assert_eq!(raw.spec.replicant_replicas(), Some(replicas), "{spec}");
            }
            assert_eq!(
                raw.spec.cluster_domain(),
                defaulted.spec.cluster_domain.as_deref().unwrap()
            );
            assert_eq!(
                Some(raw.spec.revision_history_limit()),
                defaulted.spec.revision_history_limit
            );
        }
    }
}
