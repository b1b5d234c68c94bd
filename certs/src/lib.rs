//! `emqx-certs`: CA and serving-certificate generation and rotation for the
//! webhook, and caBundle injection. Filled in by issue 5.
