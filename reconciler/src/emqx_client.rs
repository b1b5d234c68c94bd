//! The HTTP shell around [`crate::emqx_api`]: one timeout on every call,
//! bounded answers, Basic auth with the operator's bootstrap API key and
//! `Accept: application/json` (without it EMQX's 404 body is HTML).
//!
//! Plain HTTP only: the operator reaches the dashboard listener on the pod
//! IP, as upstream does by default. An https-only dashboard would need its
//! CA, which no version of the API carries yet.

use crate::emqx_api::{self, ApiGeneration, EmqxError, NodeInfo, StartOutcome, StopOutcome};
use crate::observed::Strategy;
use std::time::Duration;

/// Answers larger than this are refused: a cluster's `nodes` list is a few
/// kilobytes, and a broken proxy must not make us buffer without end.
const MAX_ANSWER: usize = 4 << 20;

/// A client for one broker endpoint (a pod that survives the upgrade).
#[derive(Clone)]
pub struct EmqxClient {
    http: reqwest::Client,
    base: String,
    api: ApiGeneration,
    key: String,
    secret: String,
    timeout: Duration,
}

impl std::fmt::Debug for EmqxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("EmqxClient")
            .field("base", &self.base)
            .field("api", &self.api)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl EmqxClient {
    /// `base` is `http://<pod IP>:<port>`; `timeout` bounds each whole call.
    pub fn new(
        base: impl Into<String>,
        api: ApiGeneration,
        key: impl Into<String>,
        secret: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, EmqxError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            // A redirect would send the operator's API key (or the request
            // it signs) wherever the answer points; EMQX's API never
            // redirects, so a 3xx is an error of the call (below).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| EmqxError::Transport {
                call: "client setup",
                detail: e.to_string(),
            })?;
        Ok(EmqxClient {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
            api,
            key: key.into(),
            secret: secret.into(),
            timeout,
        })
    }

    /// The API generation this client speaks.
    pub fn api(&self) -> ApiGeneration {
        self.api
    }

    async fn call(
        &self,
        call: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), EmqxError> {
        self.call_within(call, method, path, body, self.timeout)
            .await
    }

    /// [`EmqxClient::call`] with its own bound on the whole call.
    async fn call_within(
        &self,
        call: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), EmqxError> {
        let transport = |e: reqwest::Error| EmqxError::Transport {
            call,
            detail: transport_detail(&e, timeout),
        };
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout)
            .basic_auth(&self.key, Some(&self.secret))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(EmqxError::Malformed {
                call,
                detail: format!(
                    "HTTP {status} redirect to {location:?}, not followed (EMQX's API does not \
                     redirect: is the address a proxy?)"
                ),
            });
        }
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if answer.len() + chunk.len() > MAX_ANSWER {
                return Err(EmqxError::Malformed {
                    call,
                    detail: format!("answer larger than {MAX_ANSWER} bytes"),
                });
            }
            answer.extend_from_slice(&chunk);
        }
        Ok((status, answer))
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, EmqxError> {
        let path = format!("{}/nodes", self.api.prefix());
        let (status, body) = self
            .call("GET nodes", reqwest::Method::GET, &path, None)
            .await?;
        emqx_api::nodes(self.api, status, &body)
    }

    /// `GET /metrics`: each running node's `packets.connack.error`.
    pub async fn connack_errors(
        &self,
    ) -> Result<std::collections::BTreeMap<String, u64>, EmqxError> {
        let path = format!("{}/metrics", self.api.prefix());
        let (status, body) = self
            .call("GET metrics", reqwest::Method::GET, &path, None)
            .await?;
        emqx_api::connack_errors(self.api, status, &body)
    }

    /// EMQX 4.4's `GET /api/v4/stats`: the live connections of the cluster
    /// ([`emqx_api::live_connections_v4`]).
    pub async fn live_connections_v4(&self) -> Result<Option<u64>, EmqxError> {
        let path = format!("{}/stats", self.api.prefix());
        let (status, body) = self
            .call("GET stats", reqwest::Method::GET, &path, None)
            .await?;
        emqx_api::live_connections_v4(status, &body)
    }

    /// `GET /load_rebalance/global_status`, evacuations as `T`. It may
    /// honestly take up to three of EMQX's 15 s RPC timeouts
    /// ([`emqx_api::global_status_timeout`]), so it gets that much more
    /// time than other calls.
    pub async fn global_evacuations<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<Vec<T>, EmqxError> {
        self.global_evacuations_timed().await.0
    }

    /// [`EmqxClient::global_evacuations`] and how long it took, for telling
    /// whether EMQX may have left slow nodes out
    /// ([`emqx_api::may_leave_out_nodes`]).
    pub async fn global_evacuations_timed<T: serde::de::DeserializeOwned>(
        &self,
    ) -> (Result<Vec<T>, EmqxError>, Duration) {
        let path = format!("{}/load_rebalance/global_status", self.api.prefix());
        let started = std::time::Instant::now();
        let answer = self
            .call_within(
                "GET global_status",
                reqwest::Method::GET,
                &path,
                None,
                emqx_api::global_status_timeout(self.timeout),
            )
            .await;
        let took = started.elapsed();
        let result =
            answer.and_then(|(status, body)| emqx_api::global_evacuations(self.api, status, &body));
        (result, took)
    }

    /// `GET /load_rebalance/status`: the node's own evacuation status,
    /// answered without asking other nodes. Only whether it answers in
    /// time matters (a probe for the slow node).
    pub async fn local_evacuation_status(&self) -> Result<(), EmqxError> {
        let path = format!("{}/load_rebalance/status", self.api.prefix());
        let (status, body) = self
            .call(
                "GET load_rebalance/status",
                reqwest::Method::GET,
                &path,
                None,
            )
            .await?;
        emqx_api::local_status_answered(self.api, status, &body)
    }

    /// `POST /load_rebalance/{node}/evacuation/start`.
    pub async fn start_evacuation(
        &self,
        node: &str,
        strategy: &Strategy,
        migrate_to: &[String],
        knows_wait_health_check: bool,
    ) -> Result<StartOutcome, EmqxError> {
        let body = emqx_api::evacuation_start_body(
            self.api,
            strategy,
            migrate_to,
            knows_wait_health_check,
        );
        let path = emqx_api::evacuation_path(self.api, node, "start");
        let (status, answer) = self
            .call(
                "evacuation/start",
                reqwest::Method::POST,
                &path,
                Some(&body),
            )
            .await?;
        emqx_api::start_outcome(self.api, status, &answer)
    }

    /// `POST /load_rebalance/{node}/evacuation/stop`.
    pub async fn stop_evacuation(&self, node: &str) -> Result<StopOutcome, EmqxError> {
        let path = emqx_api::evacuation_path(self.api, node, "stop");
        let (status, answer) = self
            .call("evacuation/stop", reqwest::Method::POST, &path, None)
            .await?;
        emqx_api::stop_outcome(self.api, status, &answer)
    }

    /// `DELETE /cluster/{node}/force_leave` (5.x).
    pub async fn force_leave(&self, node: &str) -> Result<(), EmqxError> {
        let path = emqx_api::force_leave_path(node);
        let (status, answer) = self
            .call("force_leave", reqwest::Method::DELETE, &path, None)
            .await?;
        emqx_api::force_leave_outcome(status, &answer)
    }
}

/// A transport failure in words a condition can carry: reqwest's own
/// message ("error sending request for url …") hides the cause in its
/// source chain, and a timeout should say so plainly.
fn transport_detail(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {}s (timed out)", timeout.as_secs_f32());
    }
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    detail
}

#[cfg(test)]
mod tests;
