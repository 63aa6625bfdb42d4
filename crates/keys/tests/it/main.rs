#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Key custody, one test binary: the conformance suite every provider passes (`conformance`),
//! then what only one provider has (`local`: key files; `pkcs11`: SoftHSM2 tokens; `kms`: AWS
//! KMS through moto, an injected transport, and a local HTTPS server). Tests that need SoftHSM2
//! or moto say `SKIPPED: ...` on stderr and pass when they are not installed.

mod conformance;
mod kms;
mod local;
mod pkcs11;
