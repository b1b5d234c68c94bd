//! Requests that are not a review at all (as opposed to a review of an object
//! we deny): they get HTTP 400 with the reason, never a panic.

/// Why a request body could not be read as the expected review.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    /// Not JSON, or JSON of the wrong shape; the parser's message names the place.
    #[error("request body is not a valid {expected}: {reason}")]
    Malformed {
        /// `AdmissionReview` or `ConversionReview`.
        expected: &'static str,
        /// serde_json's message (line, column, what was expected).
        reason: String,
    },
    /// Parsed, but `apiVersion`/`kind` are not the one version we speak.
    #[error(
        "expected apiVersion {expected_api_version:?} kind {expected_kind:?}, got apiVersion {api_version:?} kind {kind:?}"
    )]
    WrongType {
        /// What we accept.
        expected_api_version: &'static str,
        /// What we accept.
        expected_kind: &'static str,
        /// What came.
        api_version: String,
        /// What came.
        kind: String,
    },
    /// The review has no `request`.
    #[error("{expected} has no request")]
    MissingRequest {
        /// `AdmissionReview` or `ConversionReview`.
        expected: &'static str,
    },
}
