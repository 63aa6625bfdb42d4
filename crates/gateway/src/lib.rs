//! The model gateway: every model call of an environment passes through [`call`], whether it
//! comes from the Anthropic-compatible HTTP routes (`/gateway/v1/...` in `portcullis-server`)
//! or, later, from the agent kernel in-process. One pipeline:
//!
//! ```text
//! authenticate (the API token names the environment; models.invoke)
//!   -> preflight: choose the key (the environment's own, else the platform key in trial,
//!      else `connect_your_key`) — never another environment's, never a silent fallback
//!   -> route (M3, `routing`): a tier or an allowed model, priced (I2, `pricing`), the body's
//!      `model` rewritten to the concrete model, every other byte kept; else a 400
//!   -> [budget reserve: issue 14 section 3]
//!   -> [PII redaction: section 5]            -> [opt-out / ZDR routing: section 6]
//!   -> upstream (the provider, through portcullis-outbound; streamed as it arrives)
//!   -> [restore redacted values]             -> [budget settle]
//!   -> log: one sealed intelligence-log row per call, success or not (L1), with its tier,
//!      concrete model, cost and pricing version
//! ```
//!
//! Protects against: a tenant's calls paid by another tenant's key (the key is read inside
//! the caller's own `TenantTx`, under RLS), the caller's credential or cookies reaching the
//! provider (only an allow-list of headers is forwarded), a BYOK failure silently retried on
//! the platform key, prompts stored in clear (sealed under the environment's data key), a
//! call missing from the record (the row is written after the upstream answers, also when
//! the client went away mid-stream: the upstream is read to its end, bounded).
//!
//! Must never: depend on axum or name an HTTP status of its own (upstream statuses are
//! relayed as data; [`GatewayError`] is a kind the server maps), hold a database transaction
//! across an upstream call, or forward a header it does not know.

mod accounting;
mod connect;
mod error;
mod gateway;
mod pipeline;
pub mod pricing;
pub mod redact;
pub mod routing;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

pub use accounting::{StreamAccount, Usage};
pub use connect::connect_model_key;
pub use error::{ErrorKind, GatewayError};
pub use gateway::Gateway;
pub use pipeline::{call, open_logged, Answer, LoggedCall, ModelCall, Operation};
pub use wire::{DEFAULT_ANTHROPIC_VERSION, FORWARDED_HEADERS};
