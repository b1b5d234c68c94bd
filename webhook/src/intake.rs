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
//!
//! Reviews go in one of two lanes, each with its own body budget, review
//! slots and token budget. The apiserver normally sends one object, a few KB
//! to tens of KB (a defaulted seed 003 UPDATE review is 2,240 bytes):
//! those go in the *small* lane, so they never wait behind the 3 MiB bodies
//! of the *large* lane (`webhook-attack`, 8 clients sending 3 MiB bodies:
//! normal reviews p99 0.95 s in one lane, and 49 % within 3 s on a loaded
//! machine; 0.19 s with two lanes). A body is small while its declared length, its bytes so far
//! and its tokens so far stay within [`SmallLane`]; one that outgrows it
//! moves to the large lane. Memory stays bounded by the sum of both lanes'
//! budgets.

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

/// Largest body of the small lane: 29 times a defaulted seed 003 UPDATE
/// review (2,240 bytes, 115 tokens, measured by `webhook-attack`), room for
/// an object with tens of KB of config or env, yet 1/48 of the body limit.
pub const DEFAULT_SMALL_REVIEW_BYTES: usize = 64 * 1024;

/// The lane of the reviews the apiserver normally sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmallLane {
    /// Largest body (declared, or received so far) that stays in the lane;
    /// 0 turns the lane off (every review in the large lane).
    pub max_bytes: usize,
    /// Most JSON structural tokens of a review that stays in the lane
    /// (a 64 KiB object of ordinary JSON has about 3,500).
    pub max_tokens: usize,
    /// Body bytes buffered by the lane's requests together.
    pub body_budget_bytes: usize,
    /// The lane's reviews answered at once; its token budget is this many
    /// times `max_tokens`.
    pub max_concurrent_reviews: usize,
}

impl Default for SmallLane {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_SMALL_REVIEW_BYTES,
            max_tokens: 8 * 1024,
            body_budget_bytes: 32 * DEFAULT_SMALL_REVIEW_BYTES,
            max_concurrent_reviews: 2,
        }
    }
}

/// Which budget and slots a review uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// What the apiserver normally sends.
    Small,
    /// Everything else, up to the body and token limits.
    Large,
}

/// Decides a body's lane from what is known of it so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneRule {
    max_bytes: usize,
    max_tokens: usize,
}

impl LaneRule {
    /// The small lane's bounds, never above the limits of a whole review.
    pub fn new(small: &SmallLane, max_body_bytes: usize, max_json_tokens: usize) -> Self {
        Self {
            max_bytes: small.max_bytes.min(max_body_bytes),
            max_tokens: small.max_tokens.min(max_json_tokens),
        }
    }

    /// The lane of a body that declared `declared` bytes and has sent
    /// `received` bytes holding `tokens` tokens. It only ever goes from
    /// small to large as the body arrives, since both counts only grow.
    pub fn lane(&self, declared: Option<u64>, received: usize, tokens: usize) -> Lane {
        let small = self.max_bytes > 0
            && declared.is_none_or(|n| n <= self.max_bytes as u64)
            && received <= self.max_bytes
            && tokens <= self.max_tokens;
        if small { Lane::Small } else { Lane::Large }
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
    /// The lane of small reviews; the fields above are the large lane's.
    pub small: SmallLane,
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
            small: SmallLane::default(),
        }
    }
}

/// Budget is counted in KiB so that the largest budget fits a semaphore.
const UNIT: usize = 1024;
/// The large lane's budget is taken in steps of this much, not frame by frame.
const STEP: usize = 64 * 1024;
/// The small lane's step: a small body holds little more than it sent.
const SMALL_STEP: usize = 16 * 1024;

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// A received body and the budget it holds until dropped.
#[derive(Debug)]
pub struct ReceivedBody {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The lane whose budget it holds, and whose slot it takes.
    pub lane: Lane,
    /// Its JSON structural tokens ([`json_tokens`]), counted as it arrived
    /// and at most `max_json_tokens`: what its review slot holds.
    pub tokens: usize,
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

/// The semaphores of one lane.
#[derive(Debug, Clone)]
struct LanePermits {
    budget: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    tokens: Arc<Semaphore>,
    step: usize,
}

impl LanePermits {
    fn new(budget_bytes: usize, slots: usize, tokens: usize, step: usize) -> Self {
        LanePermits {
            budget: Arc::new(Semaphore::new(units(budget_bytes) as usize)),
            slots: Arc::new(Semaphore::new(slots.max(1))),
            tokens: Arc::new(Semaphore::new(tokens.max(1))),
            step,
        }
    }
}

/// The shared limits of one server.
#[derive(Debug, Clone)]
pub struct Intake {
    /// The limits.
    pub limits: RequestLimits,
    rule: LaneRule,
    small: LanePermits,
    large: LanePermits,
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
        let rule = LaneRule::new(&limits.small, limits.max_body_bytes, limits.max_json_tokens);
        let small = &limits.small;
        Intake {
            limits,
            rule,
            // Each lane's budgets hold at least one of its largest reviews,
            // or that review would wait forever.
            small: LanePermits::new(
                small
                    .body_budget_bytes
                    .max(rule.max_bytes.next_multiple_of(SMALL_STEP)),
                small.max_concurrent_reviews,
                small.max_concurrent_reviews.max(1) * rule.max_tokens,
                SMALL_STEP,
            ),
            large: LanePermits::new(
                limits.body_budget_bytes.max(limits.max_body_bytes),
                limits.max_concurrent_reviews,
                limits.json_token_budget.max(limits.max_json_tokens),
                STEP,
            ),
        }
    }

    fn permits(&self, lane: Lane) -> &LanePermits {
        match lane {
            Lane::Small => &self.small,
            Lane::Large => &self.large,
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
        let mut lane = self.rule.lane(declared, 0, 0);
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
            let now = self.rule.lane(declared, len, tokens.count());
            if now != lane {
                // Outgrew the small lane: the large lane's budget for all of
                // it, then the small lane's back. Held until then, so the
                // bytes are always within a budget; a body can hold the
                // small lane's only up to the request timeout, as any slow
                // small body can.
                let want = len.next_multiple_of(STEP).min(limit);
                let moved = self
                    .large
                    .budget
                    .clone()
                    .acquire_many_owned(units(want))
                    .await
                    .map_err(|e| BodyError::Read(e.to_string()))?;
                permit = Some(moved);
                reserved = want;
                lane = now;
            } else if len > reserved {
                let permits = self.permits(lane);
                let want = len.next_multiple_of(permits.step).min(limit);
                let more = permits
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
            lane,
            tokens: tokens.count(),
            _budget: permit,
        })
    }

    /// A review slot of `lane` holding `tokens` of its budget, or `None` if
    /// none came free by `deadline`.
    pub async fn slot(&self, lane: Lane, tokens: usize, deadline: Instant) -> Option<Slot> {
        let permits = self.permits(lane);
        let wanted = u32::try_from(tokens.max(1)).unwrap_or(u32::MAX);
        tokio::time::timeout_at(deadline, async {
            let tokens = permits
                .tokens
                .clone()
                .acquire_many_owned(wanted)
                .await
                .ok()?;
            let slot = permits.slots.clone().acquire_owned().await.ok()?;
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

    /// One lane only (the small lane off), as before there were two.
    fn intake(max_body: usize, budget: usize) -> Intake {
        two_lanes(
            max_body,
            budget,
            SmallLane {
                max_bytes: 0,
                ..SmallLane::default()
            },
        )
    }

    fn two_lanes(max_body: usize, budget: usize, small: SmallLane) -> Intake {
        Intake::new(RequestLimits {
            max_body_bytes: max_body,
            request_timeout: Duration::from_millis(300),
            max_concurrent_reviews: 1,
            body_budget_bytes: budget,
            max_json_tokens: 100,
            json_token_budget: 150,
            small,
        })
    }

    /// A small lane of 16 KiB bodies and 20 tokens, budget for one body.
    fn small_lane() -> SmallLane {
        SmallLane {
            max_bytes: 16 * 1024,
            max_tokens: 20,
            body_budget_bytes: 16 * 1024,
            max_concurrent_reviews: 1,
        }
    }

    #[test]
    fn the_lane_follows_declared_length_bytes_so_far_and_tokens() {
        let rule = LaneRule::new(&small_lane(), 1 << 20, 100);
        let cases = [
            // (declared, received, tokens) → lane
            ((Some(16 * 1024), 0, 0), Lane::Small),
            ((Some(16 * 1024 + 1), 0, 0), Lane::Large),
            ((None, 0, 0), Lane::Small),
            ((None, 16 * 1024, 20), Lane::Small),
            ((None, 16 * 1024 + 1, 1), Lane::Large),
            ((Some(100), 100, 21), Lane::Large),
        ];
        for ((declared, received, tokens), lane) in cases {
            assert_eq!(
                rule.lane(declared, received, tokens),
                lane,
                "{declared:?} {received} {tokens}"
            );
        }
        // Off, or bounds above the review limits: clamped to them.
        let off = SmallLane {
            max_bytes: 0,
            ..small_lane()
        };
        assert_eq!(
            LaneRule::new(&off, 1 << 20, 100).lane(Some(1), 0, 1),
            Lane::Large
        );
        let clamped = LaneRule::new(&small_lane(), 1000, 10);
        assert_eq!(clamped.lane(Some(1001), 0, 0), Lane::Large);
        assert_eq!(clamped.lane(Some(1000), 1000, 11), Lane::Large);
        assert_eq!(clamped.lane(Some(1000), 1000, 10), Lane::Small);
    }

    #[tokio::test]
    async fn a_small_review_is_not_queued_behind_large_ones() {
        // The large lane saturated: its whole body budget held by one body
        // and a second one waiting, its one slot taken.
        let i = two_lanes(256 * 1024, 256 * 1024, small_lane());
        let large = i
            .receive(Body::from(vec![b' '; 256 * 1024]), Some(256 * 1024), soon())
            .await
            .expect("large body");
        assert_eq!(large.lane, Lane::Large);
        let waiting = {
            let i = i.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(5);
                i.receive(
                    Body::from(vec![b' '; 128 * 1024]),
                    Some(128 * 1024),
                    deadline,
                )
                .await
            })
        };
        let busy = i.slot(Lane::Large, 1, soon()).await.expect("large slot");
        // A small review gets its body and a slot at once.
        let started = Instant::now();
        let small = i
            .receive(Body::from(br#"{"a":[1,2]}"#.to_vec()), Some(11), soon())
            .await
            .expect("small body while the large lane is full");
        assert_eq!(small.lane, Lane::Small);
        let slot = i.slot(small.lane, small.tokens, soon()).await;
        assert!(slot.is_some(), "no small slot while the large lane is full");
        assert!(started.elapsed() < Duration::from_millis(300));
        assert!(!waiting.is_finished(), "the large lane was not full");
        drop((large, busy));
        assert_eq!(
            waiting.await.expect("task").expect("second large").lane,
            Lane::Large
        );
    }

    #[tokio::test]
    async fn a_body_that_outgrows_the_small_lane_moves_and_frees_it() {
        let i = two_lanes(256 * 1024, 256 * 1024, small_lane());
        // Undeclared, and larger than the small lane: arrives in 8 KiB
        // pieces, so it starts small and moves.
        let pieces: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>> = (0..4)
            .map(|_| {
                Ok(hyper::body::Frame::data(bytes::Bytes::from(vec![
                    b' ';
                    8192
                ])))
            })
            .collect();
        let streamed = Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            pieces,
        )));
        let moved = i.receive(streamed, None, soon()).await.expect("moved body");
        assert_eq!((moved.lane, moved.bytes.len()), (Lane::Large, 32 * 1024));
        // Declared small but with more tokens than the small lane takes.
        let many = i
            .receive(Body::from(vec![b','; 30]), Some(30), soon())
            .await
            .expect("many tokens");
        assert_eq!(many.lane, Lane::Large);
        // Both hold the large lane's budget, none of the small lane's: a
        // body using all of the small lane's budget still comes in.
        let full = i
            .receive(Body::from(vec![b' '; 16 * 1024]), Some(16 * 1024), soon())
            .await
            .expect("the small lane's budget was not given back");
        assert_eq!(full.lane, Lane::Small);
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
        let held = i.slot(Lane::Large, 1, soon()).await.expect("first slot");
        assert!(
            i.slot(Lane::Large, 1, soon()).await.is_none(),
            "a second slot at once"
        );
        drop(held);
        assert!(i.slot(Lane::Large, 1, soon()).await.is_some());
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

    #[tokio::test]
    async fn tokens_bound_the_values_and_ignore_strings() {
        assert_eq!(json_tokens(b"{}"), 2);
        assert_eq!(json_tokens(br#"[{},{},{}]"#), 7);
        assert_eq!(json_tokens(br#"{"a":"{[,\"]}","b":[1,2]}"#), 5);
        let i = intake(1000, 1000);
        let got = i.receive(Body::from("[1,2]"), None, soon()).await;
        assert_eq!(got.ok().map(|b| b.tokens), Some(3));
        let many = format!("[{}]", vec!["{}"; 200].join(","));
        assert!(matches!(
            i.receive(Body::from(many), None, soon()).await,
            Err(BodyError::TooManyValues { limit: 100, .. })
        ));
    }
}
