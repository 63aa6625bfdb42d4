//! First-run setup: a one-time token, stored hashed, lets the operator create the first owner.

use portcullis_crypto::TokenHash;
use time::OffsetDateTime;

use crate::{AuthTx, StoreError};

pub async fn setup_completed(tx: &mut AuthTx) -> Result<bool, StoreError> {
    let done: Option<OffsetDateTime> =
        sqlx::query_scalar("SELECT setup_completed_at FROM installation")
            .fetch_one(tx.conn())
            .await?;
    Ok(done.is_some())
}

/// Replaces the setup token (each start before setup prints a fresh one).
pub async fn set_setup_token(tx: &mut AuthTx, hash: &TokenHash) -> Result<(), StoreError> {
    tx.setup().await?;
    sqlx::query("UPDATE installation SET setup_token_hash = $1 WHERE setup_completed_at IS NULL")
        .bind(hash.as_bytes().as_slice())
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Consumes the setup token. False if it is wrong or setup already happened.
pub async fn complete_setup(
    tx: &mut AuthTx,
    hash: &TokenHash,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    tx.setup().await?;
    let done = sqlx::query(
        "UPDATE installation SET setup_completed_at = $2, setup_token_hash = NULL
          WHERE setup_completed_at IS NULL AND setup_token_hash = $1",
    )
    .bind(hash.as_bytes().as_slice())
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}
