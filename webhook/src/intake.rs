//! What bounds the memory of reviews: a body limit, a budget for the body
//! bytes buffered by all requests together, a limit on the JSON values of
//! one review and on those being answered at once, and a limit on reviews
//! being answered at once.
//!
//! A review's peak memory follows the number of JSON values in it, not its
//! bytes: `{}` is 3 bytes of body but a typed `EnvVar` (~300 bytes) and, in
//! the tree of what was understood, `{"name": ""}` (a 640-byte map node),
//! and conversion keeps a diff per value. `webhook-attack` measured a 3 MiB
//! `env: [{}, …]` body at 0.5–3 GB. So the body is first scanned (no
//! allocation) for its structural tokens (`{`, `[`, `,` outside strings: at
//! least the number of values), a review over `max_json_tokens` is refused
//! with 413, and the reviews being answered hold tokens from a shared
//! budget. The webhook's peak is then about `body budget + token budget ×
//! bytes per value` whatever the clients send. The body budget counts bytes
//! as they *arrive*, not as declared, so a client that announces a large
//! body and sends nothing holds nothing. Waiting for budget or a review
//! slot counts against the request timeout: a body still incomplete then is
//! answered 408, a review still without a slot 503.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The API server's own request size limit (3 MiB); nothing it sends is larger.
pub const DEFAULT_BODY_LIMIT: usize = 3 * 1024 * 1024;
/// Structural tokens of one review: a defaulted seed object has about 300,
/// so this admits a conversion of some 100 objects at once.
pub const DEFAULT_MAX_JSON_TOKENS: usize = 32 * 1024;

/// `{`, `[` and `,` outside strings, plus one: at least the number of JSON
/// values in `bytes` (and at most twice it for valid JSON). No allocation.
pub fn json_tokens(bytes: &[u8]) -> usize {
    let mut counter = TokenCounter::default();
    counter.feed(bytes);
    counter.count()
}

/// [`json_tokens`] over a body arriving in pieces.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokenCounter {
    count: usize,
    in_string: bool,
    escaped: bool,
}

impl TokenCounter {
    /// Counts the tokens of the next piece.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' | b',' => self.count += 1,
                    _ => {}
                }
            }
        }
    }

    /// Tokens so far, plus one.
    pub fn count(&self) -> usize {
        self.count + 1
    }
}

/// Limits applied to every review request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest accepted body; larger → 413 (before reading, when
    /// `Content-Length` says so).
    pub max_body_bytes: usize,
    /// Time to receive the body and get a review slot.
    pub request_timeout: Duration,
    /// Reviews answered at once; more wait.
    pub max_concurrent_reviews: usize,
    /// Body bytes buffered by all requests together; at least
    /// `max_body_bytes`.
    pub body_budget_bytes: usize,
    /// Most structural JSON tokens in one review; more → 413.
    pub max_json_tokens: usize,
    /// Tokens of the reviews being answered at once; at least
    /// `max_json_tokens`.
    pub json_token_budget: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_BODY_LIMIT,
            request_timeout: Duration::from_secs(10),
            max_concurrent_reviews: 2,
            body_budget_bytes: 4 * DEFAULT_BODY_LIMIT,
            max_json_tokens: DEFAULT_MAX_JSON_TOKENS,
            json_token_budget: DEFAULT_MAX_JSON_TOKENS * 3 / 2,
        }
    }
}

/// Budget is counted in KiB so that the largest budget fits a semaphore.
const UNIT: usize = 1024;
/// The budget is taken in steps of this much, not frame by frame.
const STEP: usize = 64 * 1024;

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// A received body and the budget it holds until dropped.
#[derive(Debug)]
pub struct ReceivedBody {
    /// The bytes.
    pub bytes: Vec<u8>,
    _budget: Option<OwnedSemaphorePermit>,
}

/// Why a body was not received.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over the limit.
    #[error("request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not all of it arrived in time.
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    /// The connection failed mid-body.
    #[error("reading the request body: {0}")]
    Read(String),
    /// Too many JSON values for one review.
    #[error(
        "request body has {tokens} or more JSON structural tokens ('{{', '[', ','); at most {limit} are reviewed at once"
    )]
    TooManyValues {
        /// Counted (so far, when refused while arriving).
        tokens: usize,
        /// The limit.
        limit: usize,
    },
}

/// The shared limits of one server.
#[derive(Debug, Clone)]
pub struct Intake {
    /// The limits.
    pub limits: RequestLimits,
    budget: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    tokens: Arc<Semaphore>,
}

/// What an answered review holds while it is being answered.
#[derive(Debug)]
pub struct Slot {
    _slot: OwnedSemaphorePermit,
    _tokens: OwnedSemaphorePermit,
}

impl Intake {
    /// Budget and slots for `limits`.
    pub fn new(limits: RequestLimits) -> Self {
        let budget = units(limits.body_budget_bytes.max(limits.max_body_bytes)) as usize;
        Intake {
            limits,
            budget: Arc::new(Semaphore::new(budget)),
            slots: Arc::new(Semaphore::new(limits.max_concurrent_reviews.max(1))),
            tokens: Arc::new(Semaphore::new(
                limits.json_token_budget.max(limits.max_json_tokens),
            )),
        }
    }

    /// Reads `body` (of declared length `declared`) by `deadline`.
    pub async fn receive(
        &self,
        body: Body,
        declared: Option<u64>,
        deadline: Instant,
    ) -> Result<ReceivedBody, BodyError> {
        let limit = self.limits.max_body_bytes;
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(BodyError::TooLarge { limit });
        }
        tokio::time::timeout_at(deadline, self.read(body, declared, limit))
            .await
            .map_err(|_| BodyError::Timeout(self.limits.request_timeout))?
    }

    async fn read(
        &self,
        mut body: Body,
        declared: Option<u64>,
        limit: usize,
    ) -> Result<ReceivedBody, BodyError> {
        let mut reserved = 0usize;
        let mut permit: Option<OwnedSemaphorePermit> = None;
        // Sized once from the declared length (already checked against the
        // limit): growing a Vec by doubling would briefly hold twice the body.
        let capacity = declared.map_or(0, |n| usize::try_from(n).unwrap_or(0).min(limit));
        let mut bytes = Vec::new();
        // Counted as the body arrives: a body with too many values is
        // refused before the rest of it is read (and its budget held).
        let mut tokens = TokenCounter::default();
        let max_tokens = self.limits.max_json_tokens;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let len = bytes.len() + data.len();
            if len > limit {
                return Err(BodyError::TooLarge { limit });
            }
            tokens.feed(&data);
            if tokens.count() > max_tokens {
                return Err(BodyError::TooManyValues {
                    tokens: tokens.count(),
                    limit: max_tokens,
                });
            }
            if len > reserved {
                let want = len.next_multiple_of(STEP).min(limit);
                let more = self
                    .budget
                    .clone()
                    .acquire_many_owned(units(want) - units(reserved))
                    .await
                    .map_err(|e| BodyError::Read(e.to_string()))?;
                match permit.as_mut() {
                    Some(p) => p.merge(more),
                    None => permit = Some(more),
                }
                reserved = want;
            }
            if bytes.capacity() == 0 && capacity > 0 {
                bytes.reserve_exact(capacity);
            }
            bytes.extend_from_slice(&data);
        }
        Ok(ReceivedBody {
            bytes,
            _budget: permit,
        })
    }

    /// Checks the number of JSON values in `body`.
    pub fn check_size(&self, body: &[u8]) -> Result<usize, BodyError> {
        let tokens = json_tokens(body);
        let limit = self.limits.max_json_tokens;
        if tokens > limit {
            return Err(BodyError::TooManyValues { tokens, limit });
        }
        Ok(tokens)
    }

    /// A review slot holding `tokens` of the budget, or `None` if none came
    /// free by `deadline`.
    pub async fn slot(&self, tokens: usize, deadline: Instant) -> Option<Slot> {
        let wanted = u32::try_from(tokens.max(1)).unwrap_or(u32::MAX);
        tokio::time::timeout_at(deadline, async {
            let tokens = self.tokens.clone().acquire_many_owned(wanted).await.ok()?;
            let slot = self.slots.clone().acquire_owned().await.ok()?;
            Some(Slot {
                _slot: slot,
                _tokens: tokens,
            })
        })
        .await
        .ok()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intake(max_body: usize, budget: usize) -> Intake {
        Intake::new(RequestLimits {
            max_body_bytes: max_body,
            request_timeout: Duration::from_millis(300),
            max_concurrent_reviews: 1,
            body_budget_bytes: budget,
            max_json_tokens: 100,
            json_token_budget: 150,
        })
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(300)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_received_whole() {
        let i = intake(1000, 1000);
        let got = i
            .receive(Body::from(vec![b'x'; 1000]), Some(1000), soon())
            .await
            .expect("received");
        assert_eq!(got.bytes.len(), 1000);
    }

    #[tokio::test]
    async fn over_the_limit_declared_or_sent_is_too_large() {
        let i = intake(1000, 1000);
        assert!(matches!(
            i.receive(Body::empty(), Some(1001), soon()).await,
            Err(BodyError::TooLarge { limit: 1000 })
        ));
        assert!(matches!(
            i.receive(Body::from(vec![b'x'; 1001]), None, soon()).await,
            Err(BodyError::TooLarge { limit: 1000 })
        ));
    }

    #[tokio::test]
    async fn held_budget_makes_the_next_body_wait_until_it_is_released() {
        // Budget for one body: the second waits, and times out while the
        // first is held; once the first is dropped it goes through.
        let i = intake(128 * 1024, 128 * 1024);
        let first = i
            .receive(Body::from(vec![b'x'; 128 * 1024]), None, soon())
            .await
            .expect("first");
        let waited = i.receive(Body::from(vec![b'y'; 1024]), None, soon()).await;
        assert!(matches!(waited, Err(BodyError::Timeout(_))), "{waited:?}");
        drop(first);
        let second = i
            .receive(Body::from(vec![b'y'; 1024]), None, soon())
            .await
            .expect("second");
        assert_eq!(second.bytes.len(), 1024);
    }

    #[tokio::test]
    async fn slots_are_limited_and_come_back() {
        let i = intake(10, 10);
        let held = i.slot(1, soon()).await.expect("first slot");
        assert!(i.slot(1, soon()).await.is_none(), "a second slot at once");
        drop(held);
        assert!(i.slot(1, soon()).await.is_some());
    }

    #[tokio::test]
    async fn a_body_with_too_many_values_is_refused_while_arriving() {
        let i = intake(1 << 20, 1 << 20);
        let many = format!("[{}]", vec!["{}"; 5000].join(","));
        let got = i.receive(Body::from(many), None, soon()).await;
        assert!(
            matches!(got, Err(BodyError::TooManyValues { limit: 100, .. })),
            "{got:?}"
        );
        let mut split = TokenCounter::default();
        split.feed(br#"["a\"#);
        split.feed(br#"",b",{"#);
        assert_eq!(split.count(), json_tokens(br#"["a\",b",{"#));
    }

    #[test]
    fn tokens_bound_the_values_and_ignore_strings() {
        assert_eq!(json_tokens(b"{}"), 2);
        assert_eq!(json_tokens(br#"[{},{},{}]"#), 7);
        assert_eq!(json_tokens(br#"{"a":"{[,\"]}","b":[1,2]}"#), 5);
        let i = intake(1000, 1000);
        assert_eq!(i.check_size(b"[1,2]").ok(), Some(3));
        let many = format!("[{}]", vec!["{}"; 200].join(","));
        assert!(matches!(
            i.check_size(many.as_bytes()),
            Err(BodyError::TooManyValues { limit: 100, .. })
        ));
    }
}
