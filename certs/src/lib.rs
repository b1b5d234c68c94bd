//! `emqx-certs`: the webhook's serving certificate.
//!
//! Three ways to get one ([`CertMode`]): self-managed (a CA and serving
//! certificate generated here, kept in one Secret shared by every replica,
//! injected as `caBundle` and rotated before expiry), cert-manager (read the
//! Secret it maintains) or provided (a mounted directory or a named Secret).
//! Whatever the source, [`CertResolver`] serves the current pair and can be
//! swapped at run time, so a new certificate needs no restart.
//!
//! The decisions (which names, when to rotate, what to write to the Secret
//! and how to guard it, what to patch) are pure functions in [`identity`],
//! [`rotation`], [`recovery`] and [`injection`]; the Kubernetes and file I/O
//! is in [`store`] and [`keeper`].

pub mod authority;
pub mod bundle;
pub mod error;
pub mod identity;
pub mod injection;
pub mod keeper;
pub mod mode;
pub mod recovery;
pub mod resolver;
pub mod rotation;
pub mod store;

pub use bundle::CertBundle;
pub use error::CertError;
pub use identity::ServiceIdentity;
pub use mode::CertMode;
pub use resolver::CertResolver;
