//! The audit trail's moving parts as a node sets them up: the checkpointer-role and owner-role
//! pools, the checkpoint signer (its seed wrapped by the vault's KEK) and a local anchor
//! directory of its own.

use portcullis_audit::checkpoint::SignedCheckpoint;
use portcullis_audit::verify::Report;
use portcullis_service::anchor::{Anchors, LocalAnchors};
use portcullis_service::trail::{self, Signer};
use portcullis_store::testing::TestDb;
use portcullis_store::vault::Vault;
use portcullis_store::Store;
use sqlx::PgPool;
use uuid::Uuid;

/// The owner-role pool of boot-time steps (`serve`, before serving) and operator commands (CLI).
pub async fn owner_pool(db: &TestDb) -> PgPool {
    portcullis_store::bootstrap::runtime_pool(&db.owner, 2)
        .await
        .unwrap()
}

/// The active checkpoint signer, created on first use, through the checkpointer's role as
/// `serve` loads it.
pub async fn signer(db: &TestDb, vault: &Vault) -> Signer {
    Signer::load_or_create(&db.checkpointer_pool().await, vault, vault.default_kek())
        .await
        .unwrap()
}

/// Anchors in a fresh directory named `{prefix}-{uuid}` under the temporary directory.
pub fn local_anchors(prefix: &str) -> Anchors {
    Anchors::Local(LocalAnchors::new(
        std::env::temp_dir().join(format!("{prefix}-{}", Uuid::now_v7())),
    ))
}

/// Cuts and anchors a checkpoint of `env`; there must be something new to cut.
pub async fn checkpoint(
    store: &Store,
    signer: &Signer,
    anchors: &Anchors,
    env: Uuid,
) -> SignedCheckpoint {
    trail::checkpoint(store, signer, anchors, env)
        .await
        .unwrap()
        .expect("a checkpoint")
}

/// `audit verify` of `env` against the signer's keys and `anchors`.
pub async fn verify(store: &Store, signer: &Signer, anchors: &Anchors, env: Uuid) -> Report {
    trail::verify_environment(store, env, signer.public_keys(), anchors, |_| {})
        .await
        .unwrap()
}
