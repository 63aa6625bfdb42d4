//! The row of `environment_keys` that says how an environment's values are sealed: a leaf, so
//! that the vault (which reads and changes it) and the node's cache (which keeps it for a few
//! seconds, `crate::auth_cache`) can both name it.

use portcullis_keys::KekRef;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

/// One environment's keyring, as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Keyring {
    pub keyring_id: Uuid,
    pub kek: Json<KekRef>,
    pub active_version: i32,
    pub min_decrypt_version: i32,
    pub rotate_after_days: i32,
    pub rotated_at: OffsetDateTime,
}
