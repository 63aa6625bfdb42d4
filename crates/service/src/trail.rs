//! The tamper-evident audit trail at run time (L3, L4): the checkpoint signing key, cutting and
//! anchoring signed checkpoints, and verifying an environment's stored chain against its
//! database checkpoints and its anchors. Knows no HTTP.

use std::num::NonZeroU64;
use std::time::Duration;

use portcullis_audit::bundle::CheckpointSource;
use portcullis_audit::checkpoint::{Checkpoint, PublicKey, SignedCheckpoint, SigningKey};
use portcullis_audit::merkle::stored::Plan;
use portcullis_audit::merkle::MerkleTree;
use portcullis_audit::verify::{Body, Report, StoredEntry, Verifier};
use portcullis_core::{EnvironmentId, Permission, PermissionSet};
use portcullis_keys::{KekRef, WrapContext};
use portcullis_store::audit_writer::entry_body;
use portcullis_store::leader::{PassLock, AUDIT_CHECKPOINTER_LOCK};
use portcullis_store::queries::audit_log::{self, operator};
use portcullis_store::vault::Vault;
use portcullis_store::{RequestMeta, Store, StoreError, TenantTx};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::anchor::Anchors;

#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("checkpoint signing key: {0}")]
    Key(String),
    #[error(transparent)]
    Anchor(#[from] crate::anchor::AnchorError),
    #[error("stored audit data is malformed: {0}")]
    Malformed(String),
    /// A stored checkpoint that this node did not sign or that is not the tree it computes at
    /// that size: never anchored (L4).
    #[error("checkpoint of size {size} refused for anchoring: {reason}")]
    Refused {
        size: i64,
        reason: String,
        /// The refused row is at the log's current size, so no checkpoint of this node's can
        /// be stored there: the checkpointer cuts and anchors its own at that size instead.
        at_head: bool,
    },
    /// The stored log contradicts the newest checkpoint this node finds in the anchor store:
    /// the node signs and anchors nothing of that environment (L4).
    #[error("{0}")]
    Contradicted(Box<Contradiction>),
    /// The anchor store could not be read before signing, so the tree could not be checked
    /// against what is anchored: nothing was signed (L4). The next pass tries again.
    #[error("anchor store unreadable, nothing signed: {0}")]
    AnchorsUnreadable(crate::anchor::AnchorError),
}

/// A tree the node refused to sign or anchor because it contradicts an anchored checkpoint
/// (L4): the chain was rewritten, or truncated, after that checkpoint was anchored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contradiction {
    pub environment: Uuid,
    /// The size the node was to sign or anchor.
    pub size: u64,
    /// The newest anchored checkpoint that verifies under the node's keys.
    pub anchored_size: u64,
    pub anchored_root: [u8; 32],
    /// The root of the stored entries at `anchored_size`; `None` when the log no longer has
    /// that many entries or the stored tree cannot be computed.
    pub recomputed_root: Option<[u8; 32]>,
    pub reason: String,
}

impl std::fmt::Display for Contradiction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "environment {}: refused to sign or anchor size {}: {} (anchored checkpoint of size {}, root {}; the stored log's root at that size: {})",
            self.environment,
            self.size,
            self.reason,
            self.anchored_size,
            hex(&self.anchored_root),
            self.recomputed_root
                .map_or_else(|| "none".to_owned(), |r| hex(&r)),
        )
    }
}

pub(crate) fn meta() -> RequestMeta {
    RequestMeta::system("checkpointer", "audit")
}

const SEED_CONTEXT: WrapContext<'static> = WrapContext {
    environment_id: "00000000-0000-0000-0000-000000000000",
    purpose: "audit-signing-key",
    version: 1,
};

/// A stored Ed25519 public key under its stored id: `None` unless it is 32 bytes long and the
/// id is the key's own (FORMAT.md; migration 0010 checks it on insert, this checks rows
/// written with the trigger off). Such a row is never published or trusted (L4).
pub(crate) fn public_key(key_id: &str, bytes: &[u8]) -> Option<PublicKey> {
    let key = <[u8; 32]>::try_from(bytes)
        .ok()
        .map(PublicKey::from_bytes)?;
    if key.key_id().to_string() == key_id {
        Some(key)
    } else {
        tracing::error!(
            control = "L4",
            key_id,
            "audit signing key row whose id is not its key's; ignored"
        );
        None
    }
}

/// The published key rows whose id matches their key: what `/.well-known` serves.
pub fn publishable(rows: Vec<audit_log::PublicKeyRow>) -> Vec<audit_log::PublicKeyRow> {
    rows.into_iter()
        .filter(|r| public_key(&r.key_id, &r.public_key).is_some())
        .collect()
}

/// Every published checkpoint key, current and retired: what verification trusts by default.
pub async fn published_keys(store: &Store) -> Result<Vec<PublicKey>, TrailError> {
    let mut tx = store.auth(meta()).await?;
    let rows = audit_log::public_keys(&mut tx).await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .filter_map(|r| public_key(&r.key_id, &r.public_key))
        .collect())
}

/// The active checkpoint signing key and the public keys of every signing key this node holds
/// (current and retired): those whose wrapped seed the node's key providers unwrap into the
/// very key the row names. A row someone added to `audit_signing_keys` without the KEK is
/// never among them, so the checkpointer anchors nothing it signed (L4).
#[derive(Debug)]
pub struct Signer {
    key: SigningKey,
    public: Vec<PublicKey>,
    anchored: AnchoredRoots,
}

/// What one anchor store holds for one environment, as far as this node has read it: the
/// largest size listed, and the newest anchored checkpoint that verified under the node's keys.
/// Anchors are write-once, so what was read stays true and only newer ones are read again.
#[derive(Clone, Copy, Debug, Default)]
struct AnchoredState {
    listed: u64,
    newest: Option<(u64, [u8; 32])>,
}

/// [`AnchoredState`] per anchor store (by its location) and environment: the in-memory cache
/// that keeps the check against the anchors (L4) to one listing of what is new and one proof.
#[derive(Debug, Default)]
struct AnchoredRoots(std::sync::Mutex<std::collections::HashMap<(String, Uuid), AnchoredState>>);

impl AnchoredRoots {
    fn get(&self, key: &(String, Uuid)) -> AnchoredState {
        self.0
            .lock()
            .map(|m| m.get(key).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Records anchored checkpoint `(size, root)` (verified) and that everything up to `listed`
    /// was read; never moves backwards.
    fn advance(&self, key: (String, Uuid), listed: u64, newest: Option<(u64, [u8; 32])>) {
        if let Ok(mut m) = self.0.lock() {
            let state = m.entry(key).or_default();
            state.listed = state.listed.max(listed);
            if let Some((size, root)) = newest {
                if state.newest.is_none_or(|(s, _)| s < size) {
                    state.newest = Some((size, root));
                }
            }
        }
    }
}

/// The public keys of `rows` whose seeds unwrap (with the node's key providers) into the key
/// the row names; `active` is trusted in any case.
async fn held_keys(
    rows: &[operator::SigningKeyRow],
    vault: &Vault,
    active: &SigningKey,
) -> Vec<PublicKey> {
    let mut held = vec![active.public_key()];
    for row in rows {
        let Some(public) = public_key(&row.key_id, &row.public_key) else {
            continue;
        };
        if held.contains(&public) {
            continue;
        }
        let seed = match serde_json::from_value::<KekRef>(row.kek.clone()) {
            Ok(kek) => vault
                .providers()
                .unwrap(&kek, &row.wrapped_seed, &SEED_CONTEXT)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match seed.and_then(|s| SigningKey::from_seed(s.expose()).map_err(|e| format!("{e:?}"))) {
            Ok(key) if key.public_key() == public => held.push(public),
            Ok(_) => tracing::error!(control = "L4", key_id = %row.key_id,
                "audit signing key row whose seed is another key's; not trusted"),
            Err(e) => tracing::warn!(control = "L4", key_id = %row.key_id, error = %e,
                "audit signing key this node cannot unwrap; not trusted for anchoring"),
        }
    }
    held
}

impl Signer {
    /// Loads the newest unretired signing key (its seed unwrapped by the key provider), or
    /// creates the first one. `pool` is the checkpointer role's (`serve`) or the owner's (CLI).
    pub async fn load_or_create(
        pool: &PgPool,
        vault: &Vault,
        kek: &KekRef,
    ) -> Result<Signer, TrailError> {
        let rows = operator::signing_keys(pool).await?;
        if let Some(active) = rows.iter().rev().find(|r| r.retired_at.is_none()) {
            let kek: KekRef = serde_json::from_value(active.kek.clone())
                .map_err(|e| TrailError::Key(e.to_string()))?;
            let seed = vault
                .providers()
                .unwrap(&kek, &active.wrapped_seed, &SEED_CONTEXT)
                .await
                .map_err(|e| TrailError::Key(e.to_string()))?;
            let key = SigningKey::from_seed(seed.expose())
                .map_err(|e| TrailError::Key(format!("{e:?}")))?;
            if key.public_key_bytes().as_slice() != active.public_key.as_slice() {
                return Err(TrailError::Key(format!(
                    "signing key {} does not match its wrapped seed",
                    active.key_id
                )));
            }
            let public = held_keys(&rows, vault, &key).await;
            return Ok(Signer {
                key,
                public,
                anchored: AnchoredRoots::default(),
            });
        }
        Self::create(pool, vault, kek).await
    }

    /// A new signing key; older keys are retired but stay published so their checkpoints
    /// keep verifying (rotation with overlap).
    pub async fn create(pool: &PgPool, vault: &Vault, kek: &KekRef) -> Result<Signer, TrailError> {
        let key = SigningKey::generate().map_err(|e| TrailError::Key(format!("{e:?}")))?;
        let seed = portcullis_crypto::envelope::DataKey::from_bytes(key.seed())
            .ok_or_else(|| TrailError::Key("bad seed".into()))?;
        let wrapped = vault
            .providers()
            .wrap(kek, &seed, &SEED_CONTEXT)
            .await
            .map_err(|e| TrailError::Key(e.to_string()))?;
        let now = OffsetDateTime::now_utc();
        let row = operator::SigningKeyRow {
            key_id: key.key_id().to_string(),
            public_key: key.public_key_bytes().to_vec(),
            wrapped_seed: wrapped,
            kek: serde_json::to_value(kek).map_err(|e| TrailError::Key(e.to_string()))?,
            created_at: now,
            retired_at: None,
        };
        operator::add_signing_key(pool, &row).await?;
        operator::retire_other_keys(pool, &row.key_id, now).await?;
        let public = held_keys(&operator::signing_keys(pool).await?, vault, &key).await;
        tracing::info!(key_id = %row.key_id, "new audit checkpoint signing key");
        Ok(Signer {
            key,
            public,
            anchored: AnchoredRoots::default(),
        })
    }

    pub fn key_id(&self) -> String {
        self.key.key_id().to_string()
    }

    /// The public keys of the signing keys this node holds (current and retired).
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.public
    }

    /// Signs a monthly report body (L6) with the active key.
    pub fn sign_report(
        &self,
        body: portcullis_audit::report::ReportBody,
    ) -> Result<portcullis_audit::report::SignedReport, TrailError> {
        body.sign(&self.key)
            .map_err(|e| TrailError::Malformed(format!("report: {e}")))
    }
}

/// Cuts a signed checkpoint of the environment's log at its current head, stores it and
/// anchors it. `None` when the log is empty or already checkpointed at this size.
pub async fn checkpoint(
    store: &Store,
    signer: &Signer,
    anchors: &Anchors,
    env: Uuid,
) -> Result<Option<SignedCheckpoint>, TrailError> {
    // A checkpoint covers everything committed before it is cut.
    store.sequence(env).await?;
    let mut tx = store
        .tenant_as_system(EnvironmentId::from_uuid(env), PermissionSet::all(), meta())
        .await?;
    let Some((seq, head, frontier)) = audit_log::head(&mut tx).await? else {
        return Ok(None);
    };
    let size = u64::try_from(seq).map_err(|_| TrailError::Malformed("negative seq".into()))?;
    if size == 0 {
        return Ok(None);
    }
    let frontier = frontier
        .iter()
        .map(|h| <[u8; 32]>::try_from(h.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TrailError::Malformed("frontier".into()))?;
    let tree = MerkleTree::from_frontier(size, frontier)
        .ok_or_else(|| TrailError::Malformed("frontier does not match size".into()))?;
    let last_entry_hash =
        <[u8; 32]>::try_from(head.as_slice()).map_err(|_| TrailError::Malformed("head".into()))?;
    // Never lend the signature to a history that contradicts what is anchored (L4): a
    // consistent rewrite inside the database would otherwise be signed and anchored.
    let root = tree.root();
    match check_against_anchors(&mut tx, signer, anchors, env, size, &root).await {
        Ok(()) => {}
        Err(TrailError::Anchor(e)) => return Err(TrailError::AnchorsUnreadable(e)),
        Err(e) => return Err(e),
    }
    let now = OffsetDateTime::now_utc();
    let cp = Checkpoint {
        environment_id: env,
        tree_size: size,
        root_hash: root,
        last_entry_hash,
        issued_at: now.unix_timestamp(),
    };
    let text = signer.key.sign(&cp).to_string();
    audit_log::insert_checkpoint(
        &mut tx,
        seq,
        &cp.root_hash,
        &last_entry_hash,
        now,
        &signer.key_id(),
        &text,
    )
    .await?;
    // Another node (or the CLI) may have checkpointed this size first, signed at another
    // moment: anchor what the database holds, so the anchor agrees with it, if it verifies.
    // A row someone else put there (a size inserted ahead of the log, a key of their own) is
    // refused, and this node's own checkpoint of the size is anchored instead (L4).
    let stored = audit_log::checkpoint_at(&mut tx, seq).await?;
    tx.commit().await?;
    let mut anchored = stored.signed;
    if anchored != text {
        tracing::debug!(environment = %env, size, "checkpoint already cut by another process");
        match anchor(store, signer, anchors, env, seq, &anchored).await {
            Err(TrailError::Refused { .. }) => {
                anchored = text;
                anchor(store, signer, anchors, env, seq, &anchored).await?;
            }
            other => other?,
        }
    } else {
        anchor(store, signer, anchors, env, seq, &anchored).await?;
    }
    let anchored: SignedCheckpoint = anchored
        .parse()
        .map_err(|e| TrailError::Malformed(format!("checkpoint {size}: {e:?}")))?;
    Ok(Some(anchored))
}

/// A stored checkpoint fit to anchor (or to publish), or why not and whether it sits at the
/// log's head.
pub(crate) type AnchorCheck = Result<(), (String, bool)>;

/// Checks a stored checkpoint before it is anchored (L4): it must parse, be signed by a key
/// this node holds ([`Signer::public_keys`], never merely a row of `audit_signing_keys`), name
/// this environment and `tree_size`, lie within the log, and match the tree the node computes
/// at that size from the stored entry hashes and subtree nodes: the root, and the entry hash of
/// entry `tree_size`. The head row's frontier is not trusted here, so a checkpoint this node
/// signed from a tampered head is refused too. `Ok(Err((reason, at_head)))` is a refusal;
/// `at_head` says the row is at the log's current size.
pub(crate) async fn check_for_anchor(
    tx: &mut TenantTx,
    held_keys: &[PublicKey],
    env: Uuid,
    tree_size: i64,
    signed: &str,
) -> Result<AnchorCheck, TrailError> {
    let seq = audit_log::head(tx).await?.map_or(0, |(seq, _, _)| seq);
    let at_head = tree_size == seq;
    let refuse = |reason: String| -> Result<AnchorCheck, TrailError> { Ok(Err((reason, at_head))) };
    let cp: SignedCheckpoint = match signed.parse() {
        Ok(cp) => cp,
        Err(e) => return refuse(format!("not a signed checkpoint: {e:?}")),
    };
    if let Err(e) = cp.verify(held_keys) {
        return refuse(format!("not signed by a key this node holds: {e:?}"));
    }
    let c = &cp.checkpoint;
    if c.environment_id != env {
        return refuse(format!("names environment {}", c.environment_id));
    }
    let size = match u64::try_from(tree_size) {
        Ok(size) if size > 0 && size == c.tree_size => size,
        _ => return refuse(format!("names size {} in row {tree_size}", c.tree_size)),
    };
    if tree_size > seq {
        return refuse(format!("beyond the log's head ({seq} entries)"));
    }
    let plan = Plan::for_ranges([(0, size), (size - 1, size)]);
    let source = match audit_log::proof_source(tx, &plan).await {
        Ok(source) => source,
        Err(StoreError::Integrity(e)) => return refuse(format!("tree: {e}")),
        Err(e) => return Err(e.into()),
    };
    let (root, last) = match (source.hash(0, size), source.leaf_data(size - 1)) {
        (Ok(root), Some(last)) => (root, *last),
        (Err(e), _) => return refuse(format!("tree: {e}")),
        (_, None) => return refuse(format!("entry {size} is missing")),
    };
    if root != c.root_hash {
        return refuse("its root is not the log's root at that size".into());
    }
    if last != c.last_entry_hash {
        return refuse("its head is not the log's entry at that size".into());
    }
    Ok(Ok(()))
}

/// Writes a stored checkpoint to the anchor store and records that it is there, so later
/// passes do not anchor it again. Idempotent: the anchor stores accept identical content again
/// (the local store never overwrites; S3 answers "exists" and the content is compared).
///
/// Only a checkpoint that passes [`check_for_anchor`] is written; anything else is logged
/// (control L4) and returned as [`TrailError::Refused`], never anchored.
async fn anchor(
    store: &Store,
    signer: &Signer,
    anchors: &Anchors,
    env: Uuid,
    tree_size: i64,
    signed: &str,
) -> Result<(), TrailError> {
    let size = u64::try_from(tree_size).map_err(|_| TrailError::Malformed("tree size".into()))?;
    let mut tx = store
        .tenant_as_system(EnvironmentId::from_uuid(env), PermissionSet::all(), meta())
        .await?;
    if let Err((reason, at_head)) =
        check_for_anchor(&mut tx, signer.public_keys(), env, tree_size, signed).await?
    {
        tracing::error!(control = "L4", environment = %env, size = tree_size, reason = %reason,
            "refusing to anchor a stored checkpoint this node cannot verify");
        return Err(TrailError::Refused {
            size: tree_size,
            reason,
            at_head,
        });
    }
    let root = signed
        .parse::<SignedCheckpoint>()
        .map_err(|e| TrailError::Malformed(format!("checkpoint {size}: {e:?}")))?
        .checkpoint
        .root_hash;
    check_against_anchors(&mut tx, signer, anchors, env, size, &root).await?;
    anchors.put(env, size, signed).await?;
    audit_log::record_anchored(&mut tx, tree_size, OffsetDateTime::now_utc()).await?;
    tx.commit().await?;
    signer
        .anchored
        .advance((anchors.to_string(), env), size, Some((size, root)));
    Ok(())
}

/// The root of an anchored checkpoint text found at size `at`, if it verifies under the keys
/// this node holds and names this environment and size; else why not.
fn anchored_root(signer: &Signer, env: Uuid, at: u64, text: &str) -> Result<[u8; 32], String> {
    let cp = text
        .parse::<SignedCheckpoint>()
        .map_err(|e| format!("does not parse: {e:?}"))?;
    cp.verify(signer.public_keys())
        .map_err(|e| format!("not signed by a key this node holds: {e:?}"))?;
    let c = cp.checkpoint;
    if c.environment_id != env || c.tree_size != at {
        return Err(format!(
            "names environment {} size {}",
            c.environment_id, c.tree_size
        ));
    }
    Ok(c.root_hash)
}

/// Checks a tree of `size` entries with root `root`, about to be signed or anchored, against
/// the newest checkpoint of `env` in the anchor store that verifies under the node's keys
/// (L4). Only what was anchored after the last check is read (the node keeps the newest
/// verified root per environment in memory); then one consistency proof is built from the
/// stored subtree nodes and entry hashes and verified against the anchored root and `root`:
/// from the anchored size to `size`, or, when re-anchoring an older checkpoint, from `size`
/// to the anchored size. An anchored size beyond the log means the log was truncated. A
/// contradiction is logged as an error and returned as [`TrailError::Contradicted`]; an
/// anchor store that cannot be read is [`TrailError::Anchor`].
async fn check_against_anchors(
    tx: &mut TenantTx,
    signer: &Signer,
    anchors: &Anchors,
    env: Uuid,
    size: u64,
    root: &[u8; 32],
) -> Result<(), TrailError> {
    use portcullis_audit::merkle::{consistency_proof_from, verify_consistency};
    let key = (anchors.to_string(), env);
    let known = signer.anchored.get(&key);
    let mut newest = known.newest;
    // Sizes only (one listing of what is newer than what was read before), then the newest
    // ones read until one verifies: after a restart the first check reads one checkpoint, not
    // the whole store.
    let sizes = anchors.sizes_after(env, known.listed).await?;
    let listed = sizes.last().copied().unwrap_or(known.listed);
    'newest: for &at in sizes.iter().rev() {
        for text in anchors.at(env, at).await? {
            match anchored_root(signer, env, at, &text) {
                Ok(anchored_root) => {
                    newest = Some((at, anchored_root));
                    break 'newest;
                }
                Err(reason) => tracing::error!(control = "L4", environment = %env, size = at,
                    reason = %reason, "anchored checkpoint this node cannot verify; not used as evidence"),
            }
        }
    }
    signer.anchored.advance(key, listed, newest);
    let Some((anchored_size, anchored_root)) = newest else {
        return Ok(());
    };
    let head = audit_log::head(tx)
        .await?
        .map_or(0, |(seq, _, _)| u64::try_from(seq).unwrap_or(0));
    let contradiction = |reason: String, recomputed_root: Option<[u8; 32]>| {
        let c = Contradiction {
            environment: env,
            size,
            anchored_size,
            anchored_root,
            recomputed_root,
            reason,
        };
        tracing::error!(control = "L4", environment = %env, size, anchored_size,
            anchored_root = %hex(&anchored_root),
            recomputed_root = %c.recomputed_root.map_or_else(|| "none".to_owned(), |r| hex(&r)),
            reason = %c.reason,
            "refusing to sign or anchor: the stored audit log contradicts its anchored checkpoint");
        Err(TrailError::Contradicted(Box::new(c)))
    };
    if anchored_size > head {
        return contradiction(
            format!("the log holds {head} entries, fewer than anchored: it was truncated"),
            None,
        );
    }
    let (old, new) = if anchored_size <= size {
        (anchored_size, size)
    } else {
        (size, anchored_size)
    };
    let plan = Plan::consistency(old, new)
        .ok_or_else(|| TrailError::Malformed("consistency plan".into()))?
        .union(Plan::for_ranges([(0, anchored_size)]));
    let source = match audit_log::proof_source(tx, &plan).await {
        Ok(source) => source,
        Err(StoreError::Integrity(e)) => return contradiction(format!("stored tree: {e}"), None),
        Err(e) => return Err(e.into()),
    };
    let recomputed = source.hash(0, anchored_size).ok();
    let mut proving = source.clone();
    let proof = match consistency_proof_from(&mut proving, old, new) {
        Ok(proof) => proof,
        Err(e) => return contradiction(format!("stored tree: {e}"), recomputed),
    };
    let (old_root, new_root) = if anchored_size <= size {
        (&anchored_root, root)
    } else {
        (root, &anchored_root)
    };
    if recomputed != Some(anchored_root)
        || !verify_consistency(old, new, old_root, new_root, &proof)
    {
        return contradiction(
            "the stored log is not an extension of the anchored checkpoint".into(),
            recomputed,
        );
    }
    Ok(())
}

/// Checkpoints re-anchored per pass at most (after an outage, or once after the upgrade that
/// started recording anchoring, when every older checkpoint is written again idempotently).
const REANCHOR_BATCH: i64 = 500;

/// What one checkpointer pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointPass {
    /// Another node held the checkpointer lock; nothing was done.
    pub skipped: bool,
    /// New checkpoints cut and stored (anchored or not).
    pub cut: usize,
    /// Earlier checkpoints anchored now (their first anchoring had failed).
    pub reanchored: usize,
    /// Checkpoints whose anchoring failed in this pass; the next pass retries them.
    pub anchor_failures: usize,
    /// Stored checkpoints refused for anchoring: not signed by a key this node holds, or not
    /// the tree at their size (L4). Logged, never anchored.
    pub refused: usize,
    /// Environments whose stored log contradicts their newest anchored checkpoint (a rewrite
    /// or truncation after it was anchored): nothing of theirs was signed or anchored (L4).
    pub contradicted: Vec<Contradiction>,
}

/// Unanchored checkpoints read per pass at most, anchored or refused: refused rows stay
/// unanchored, so the scan goes past them rather than stopping at the first batch.
const REANCHOR_SCAN: usize = 20 * REANCHOR_BATCH as usize;

fn anchor_failed(
    report: &mut CheckpointPass,
    env: Uuid,
    size: i64,
    e: &crate::anchor::AnchorError,
) {
    report.anchor_failures += 1;
    if matches!(e, crate::anchor::AnchorError::Conflict { .. }) {
        tracing::error!(environment = %env, size, error = %e, "anchor store holds a different checkpoint for this size");
    } else {
        tracing::warn!(environment = %env, size, error = %e, "anchoring a checkpoint failed; the next pass retries");
    }
}

/// Each contradicted environment once per pass (its re-anchoring and its new checkpoint may
/// both be refused).
fn contradicted(report: &mut CheckpointPass, c: Contradiction) {
    if !report
        .contradicted
        .iter()
        .any(|k| k.environment == c.environment)
    {
        report.contradicted.push(c);
    }
}

/// One checkpointer pass: checkpoints whose anchoring failed earlier are anchored again, then
/// every scope with enough new entries, or old enough ones, gets a checkpoint. Only one node
/// at a time runs it: the pass holds the advisory lock
/// [`AUDIT_CHECKPOINTER_LOCK`](portcullis_store::leader::AUDIT_CHECKPOINTER_LOCK) and is
/// skipped when another node holds it. `pool` is the checkpointer role's
/// (`portcullis_checkpointer`, as `serve` opens it) or the owner's, and needs a free
/// connection for the lock. Checkpoints are cut and anchors recorded through `store`.
pub async fn checkpoint_pass(
    store: &Store,
    pool: &PgPool,
    signer: &Signer,
    anchors: &Anchors,
    every_entries: i64,
    every: Duration,
) -> Result<CheckpointPass, TrailError> {
    let Some(lock) = PassLock::try_acquire(pool, AUDIT_CHECKPOINTER_LOCK).await? else {
        tracing::debug!("audit checkpointer pass skipped: another node holds its lock");
        return Ok(CheckpointPass {
            skipped: true,
            ..CheckpointPass::default()
        });
    };
    // Checkpoints cover what is committed: chain every scope's pending entries first (a node's
    // own sequencer does so continuously; this also catches those of nodes that are gone).
    if let Some(sequencer) = store.sequencer() {
        sequencer.sweep().await?;
    }
    let mut report = CheckpointPass::default();
    let mut after = None;
    let mut scanned = 0usize;
    // Scopes whose current size holds a refused row: nothing of this node's can be stored at
    // that size, so it cuts (and anchors) its own checkpoint there below.
    let mut poisoned_heads = vec![];
    while report.reanchored < REANCHOR_BATCH as usize && scanned < REANCHOR_SCAN {
        let page = operator::unanchored_checkpoints(pool, after, REANCHOR_BATCH).await?;
        let Some((env, size, _)) = page.last() else {
            break;
        };
        after = Some((*env, *size));
        scanned += page.len();
        for (env, size, signed) in page {
            match anchor(store, signer, anchors, env, size, &signed).await {
                Ok(()) => report.reanchored += 1,
                Err(TrailError::Anchor(e)) => anchor_failed(&mut report, env, size, &e),
                Err(TrailError::Refused { at_head, .. }) => {
                    report.refused += 1;
                    if at_head {
                        poisoned_heads.push(env);
                    }
                }
                Err(TrailError::Contradicted(c)) => contradicted(&mut report, *c),
                Err(e) => return Err(e),
            }
        }
    }
    let now = OffsetDateTime::now_utc();
    let due = operator::uncheckpointed(pool).await?;
    poisoned_heads.retain(|env| !due.iter().any(|(e, ..)| e == env));
    let forced = poisoned_heads.into_iter().map(|env| (env, 0, 0, None));
    for (env, seq, last, last_at) in due.into_iter().chain(forced) {
        let stale = last_at.is_none_or(|t| now - t >= every);
        if seq - last < every_entries && !stale {
            continue;
        }
        match checkpoint(store, signer, anchors, env).await {
            Ok(Some(_)) => report.cut += 1,
            Ok(None) => {}
            // The checkpoint is stored; only its anchoring failed.
            Err(TrailError::Anchor(e)) => {
                report.cut += 1;
                anchor_failed(&mut report, env, seq, &e);
            }
            Err(TrailError::Refused { .. }) => report.refused += 1,
            Err(TrailError::Contradicted(c)) => contradicted(&mut report, *c),
            // Nothing was signed: the anchors could not be read to check against.
            Err(TrailError::AnchorsUnreadable(e)) => anchor_failed(&mut report, env, seq, &e),
            Err(e) => return Err(e),
        }
    }
    lock.release().await?;
    Ok(report)
}

/// Runs the checkpointer until the process ends; failures are logged and retried.
pub async fn checkpointer(
    store: Store,
    pool: PgPool,
    signer: Signer,
    anchors: Anchors,
    every_entries: i64,
    every: Duration,
) {
    let tick = (every / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        tokio::time::sleep(tick).await;
        if let Err(e) = checkpoint_pass(
            &store,
            &pool,
            &signer,
            &anchors,
            every_entries.max(1),
            every,
        )
        .await
        {
            tracing::error!(error = %e, "audit checkpointer pass failed; retrying");
        }
    }
}

/// Entries per page when verification reads the log.
const VERIFY_PAGE: i64 = 10_000;

/// Verifies an environment's stored chain against every checkpoint in the database and every
/// anchored checkpoint, streaming entries in batches. Anchors catch a chain that was rewritten
/// consistently inside the database. The head row (`audit_heads`: size, head hash, Merkle
/// frontier) is compared too, so deleting the newest entries, past the last checkpoint, is
/// reported (L3). A checkpoint that does not parse (in the database or the anchor store) is
/// a finding and verification goes on without it (L4).
pub async fn verify_environment(
    store: &Store,
    env: Uuid,
    trusted: &[PublicKey],
    anchors: &Anchors,
    mut progress: impl FnMut(u64),
) -> Result<Report, TrailError> {
    use portcullis_audit::verify::{Problem, ProblemKind};
    let env_id = EnvironmentId::from_uuid(env);
    let perms = PermissionSet::of(&[Permission::AuditRead]);
    store.sequence(env).await?;
    let mut tx = store.tenant_as_system(env_id, perms, meta()).await?;
    let mut verifier = Verifier::new(env, trusted)
        .with_progress(NonZeroU64::MIN.saturating_add(9_999), &mut progress);
    let malformed = |detail: String| Problem {
        seq: None,
        kind: ProblemKind::Malformed,
        detail,
    };
    let mut checkpoints: Vec<(SignedCheckpoint, &str)> = vec![];
    let mut notes = vec![];
    for row in audit_log::checkpoints(&mut tx).await? {
        match row.signed.parse() {
            Ok(cp) => checkpoints.push((cp, "the database")),
            Err(e) => notes.push(malformed(format!(
                "stored checkpoint for size {} does not parse: {e:?}",
                row.tree_size
            ))),
        }
    }
    for (size, text) in anchors.list(env).await? {
        match text.parse() {
            Ok(cp) => checkpoints.push((cp, "the anchor store")),
            Err(e) => notes.push(malformed(format!(
                "anchored checkpoint file for size {size} does not parse: {e:?}"
            ))),
        }
    }
    for note in notes {
        tracing::error!(control = "L4", environment = %env, finding = %note, "audit verification finding");
        verifier.note(note);
    }
    for (cp, source) in &checkpoints {
        verifier.add_checkpoint_from(cp, source);
    }
    // The head is read before the entries and again after them. Every entry up to the first
    // reading must be in the log (deleting the newest entries leaves the head ahead of it), and
    // at that size the log must have the head's hash and frontier; an entry beyond the second
    // reading was not appended through the head (entries appended while verification runs
    // advance the head in their own transaction, before the second reading).
    let head = audit_log::head(&mut tx).await?;
    let head_seq = head.as_ref().map_or(0, |(seq, _, _)| *seq);
    // Fetching and hashing overlap: one task pages through the log on the transaction's
    // connection while this one rebuilds and hashes the previous page.
    let (pages, mut received) = tokio::sync::mpsc::channel::<Vec<audit_log::StoredEntry>>(2);
    let fetcher = tokio::spawn(async move {
        let mut after = 0i64;
        loop {
            let page = audit_log::stored_range(&mut tx, after, VERIFY_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            if pages.send(page).await.is_err() {
                break; // the verifier has seen enough
            }
        }
        let head_after = audit_log::head(&mut tx).await?;
        Ok::<_, StoreError>((tx, head_after))
    });
    let mut last_seq = 0i64;
    let mut at_head = None;
    while let Some(page) = received.recv().await {
        for row in &page {
            let body = entry_body(row);
            let entry = StoredEntry {
                seq: u64::try_from(row.seq).unwrap_or(0),
                prev_hash: <[u8; 32]>::try_from(row.prev_hash.as_slice()).unwrap_or([0; 32]),
                entry_hash: <[u8; 32]>::try_from(row.entry_hash.as_slice()).unwrap_or([0; 32]),
                body: Body::Json(&body),
            };
            verifier.push(&entry);
            last_seq = row.seq;
            if row.seq == head_seq && verifier.entries() == entry.seq {
                at_head = Some((verifier.root(), verifier.last_entry_hash()));
            }
        }
        if verifier.is_done() {
            break;
        }
    }
    drop(received);
    let (tx, head_after) = fetcher
        .await
        .map_err(|e| TrailError::Malformed(format!("audit fetch task: {e}")))??;
    tx.commit().await?;
    // Only a chain that verified to its end is compared (a failure still being classified is
    // reported by `finish`).
    if !verifier.is_done() && i64::try_from(verifier.entries()).is_ok_and(|n| n == last_seq) {
        let head_after = head_after.map_or(0, |(seq, _, _)| seq);
        if let Some(problem) = head_mismatch(head, at_head, last_seq, head_after) {
            tracing::error!(control = "L3", environment = %env, finding = %problem, "audit verification finding");
            verifier.note(problem);
        }
    }
    Ok(verifier.finish())
}

/// Compares the verified chain with the head row: its size (entries deleted at the end leave
/// the head ahead of the log; entries added around the writer leave it behind), and its hash
/// and Merkle frontier at that size (`at_head`: the verified root and last entry hash once
/// the chain reached it). `None` when they agree.
fn head_mismatch(
    head: Option<(i64, Vec<u8>, Vec<Vec<u8>>)>,
    at_head: Option<([u8; 32], [u8; 32])>,
    last_seq: i64,
    head_after: i64,
) -> Option<portcullis_audit::verify::Problem> {
    use portcullis_audit::verify::{Problem, ProblemKind};
    let Some((seq, hash, frontier)) = head else {
        return (last_seq > head_after).then(|| Problem {
            seq: Some(1),
            kind: ProblemKind::Inserted,
            detail: format!("the log holds {last_seq} entries but has no head row"),
        });
    };
    if last_seq < seq {
        return Some(Problem {
            seq: Some(u64::try_from(last_seq).unwrap_or(0) + 1),
            kind: ProblemKind::Missing,
            detail: format!(
                "the head row records {seq} entries but the log ends after {last_seq}: the newest entries were deleted"
            ),
        });
    }
    if last_seq > head_after {
        return Some(Problem {
            seq: Some(u64::try_from(head_after).unwrap_or(0) + 1),
            kind: ProblemKind::Inserted,
            detail: format!(
                "the log holds {last_seq} entries but the head row only {head_after}: entries were added around the writer"
            ),
        });
    }
    let size = u64::try_from(seq).unwrap_or(0);
    let frontier: Option<Vec<[u8; 32]>> = frontier
        .iter()
        .map(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
        .collect();
    let root = frontier
        .and_then(|f| MerkleTree::from_frontier(size, f))
        .map(|t| t.root());
    match (root, at_head) {
        (Some(root), Some((log_root, log_head)))
            if root == log_root && hash.as_slice() == log_head.as_slice() =>
        {
            None
        }
        _ if size == 0 => None,
        _ => Some(Problem {
            seq: Some(size),
            kind: ProblemKind::InconsistentWithCheckpoint,
            detail: format!(
                "the head row's hash or Merkle frontier at {size} entries is not the log's: the head row was edited"
            ),
        }),
    }
}

/// Export formats of the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
    /// JSONL with public keys and signed checkpoints, verifiable offline with
    /// `portcullis audit verify --bundle`.
    Bundle,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            "bundle" => Ok(ExportFormat::Bundle),
            other => Err(format!(
                "unknown export format `{other}` (jsonl, csv or bundle)"
            )),
        }
    }
}

/// A checkpoint an export bundle carries: its text as found and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleCheckpoint {
    pub tree_size: u64,
    pub text: String,
    pub sources: Vec<CheckpointSource>,
}

/// The checkpoints a bundle of `env` carries (L4, issue 11 item 2): every database row and
/// every checkpoint in the anchor store, each distinct text once with where it was found, by
/// size. A database-only attacker who deletes checkpoint rows and rewrites the chain
/// consistently cannot take the anchored ones out of the export. An anchor store that cannot
/// be read fails the export: a bundle without its anchors would look complete.
pub async fn bundle_checkpoints(
    rows: &[audit_log::CheckpointRow],
    anchors: &Anchors,
    env: Uuid,
) -> Result<Vec<BundleCheckpoint>, TrailError> {
    let mut found: std::collections::BTreeMap<(u64, String), Vec<CheckpointSource>> =
        Default::default();
    for row in rows {
        let size = u64::try_from(row.tree_size).unwrap_or(0);
        found
            .entry((size, row.signed.clone()))
            .or_default()
            .push(CheckpointSource::Database);
    }
    for (size, text) in anchors.list(env).await? {
        let sources = found.entry((size, text)).or_default();
        if !sources.contains(&CheckpointSource::Anchor) {
            sources.push(CheckpointSource::Anchor);
        }
    }
    Ok(found
        .into_iter()
        .map(|((tree_size, text), sources)| BundleCheckpoint {
            tree_size,
            text,
            sources,
        })
        .collect())
}

/// What the request path needs of the trail: the anchor store (exports carry its checkpoints)
/// and the public keys of the signing keys this node holds (the checkpoint feed serves only
/// what they signed; [`Signer::public_keys`], never merely a row of `audit_signing_keys`).
#[derive(Clone, Debug)]
pub struct TrailAccess {
    pub anchors: Anchors,
    pub held_keys: Vec<PublicKey>,
}

impl TrailAccess {
    pub fn new(anchors: Anchors, signer: &Signer) -> TrailAccess {
        TrailAccess {
            anchors,
            held_keys: signer.public_keys().to_vec(),
        }
    }
}

/// Lower-case hex, as in every audit format.
pub(crate) use portcullis_audit::hex::encode as hex;

/// A `Write` whose bytes are taken out batch by batch.
#[derive(Clone, Default)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }
}

/// One CSV field per RFC 4180, with cells a spreadsheet would run as a formula defused.
fn csv_field(out: &mut String, value: &str) {
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&defused.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&defused);
    }
}

const CSV_HEADER: &str = "seq,occurred_at,actor_type,actor_id,action,action_version,target_type,target_id,outcome,before,after,request_id,ip,user_agent,prev_hash,entry_hash\r\n";

fn csv_row(r: &audit_log::StoredEntry) -> String {
    let mut line = String::with_capacity(256);
    let json =
        |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
    let fields = [
        r.seq.to_string(),
        portcullis_store::audit_writer::rfc3339_micros(r.occurred_at),
        r.actor_type.clone(),
        r.actor_id.map(|a| a.to_string()).unwrap_or_default(),
        r.action.clone(),
        r.action_version.to_string(),
        r.target_type.clone(),
        r.target_id.clone().unwrap_or_default(),
        r.outcome.clone(),
        json(&r.before),
        json(&r.after),
        r.request_id.clone().unwrap_or_default(),
        r.ip.clone().unwrap_or_default(),
        r.user_agent.clone().unwrap_or_default(),
        hex(&r.prev_hash),
        hex(&r.entry_hash),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        csv_field(&mut line, f);
    }
    line.push_str("\r\n");
    line
}

/// Turns batches of stored entries into export bytes; shared by the API (streamed) and the
/// CLI (to a file).
pub struct ExportWriter {
    format: ExportFormat,
    buf: SharedBuf,
    bundle: Option<portcullis_audit::bundle::BundleWriter<SharedBuf>>,
}

impl std::fmt::Debug for ExportWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportWriter")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl ExportWriter {
    pub fn new(
        format: ExportFormat,
        env: Uuid,
        keys: &[PublicKey],
        checkpoints: &[BundleCheckpoint],
    ) -> Result<Self, TrailError> {
        let buf = SharedBuf::default();
        let mut bundle = None;
        match format {
            ExportFormat::Csv => {
                use std::io::Write;
                buf.clone()
                    .write_all(CSV_HEADER.as_bytes())
                    .map_err(|e| TrailError::Malformed(e.to_string()))?;
            }
            ExportFormat::Bundle => {
                let mut w = portcullis_audit::bundle::BundleWriter::new(buf.clone(), env, keys)
                    .map_err(|e| TrailError::Malformed(e.to_string()))?;
                for c in checkpoints {
                    w.write_checkpoint(&c.text, &c.sources)
                        .map_err(|e| TrailError::Malformed(e.to_string()))?;
                }
                bundle = Some(w);
            }
            ExportFormat::Jsonl => {}
        }
        Ok(ExportWriter {
            format,
            buf,
            bundle,
        })
    }

    /// The bytes for these rows (and anything written before them).
    pub fn write_rows(&mut self, rows: &[audit_log::StoredEntry]) -> Result<Vec<u8>, TrailError> {
        use std::io::Write;
        let err = |e: std::io::Error| TrailError::Malformed(e.to_string());
        for r in rows {
            match (&mut self.bundle, self.format) {
                (Some(w), _) => {
                    let prev = <[u8; 32]>::try_from(r.prev_hash.as_slice())
                        .map_err(|_| TrailError::Malformed("hash".into()))?;
                    let hash = <[u8; 32]>::try_from(r.entry_hash.as_slice())
                        .map_err(|_| TrailError::Malformed("hash".into()))?;
                    w.write_entry(
                        u64::try_from(r.seq).unwrap_or(0),
                        &prev,
                        &hash,
                        &entry_body(r),
                    )
                    .map_err(err)?;
                }
                (None, ExportFormat::Csv) => self
                    .buf
                    .clone()
                    .write_all(csv_row(r).as_bytes())
                    .map_err(err)?,
                (None, _) => {
                    // Canonical JSON per line: exactly the bytes a monthly report's
                    // `jsonl_sha256` covers (L6), so an export of a month's window hashes to it.
                    let prev = <[u8; 32]>::try_from(r.prev_hash.as_slice())
                        .map_err(|_| TrailError::Malformed("hash".into()))?;
                    let hash = <[u8; 32]>::try_from(r.entry_hash.as_slice())
                        .map_err(|_| TrailError::Malformed("hash".into()))?;
                    let mut line = Vec::with_capacity(512);
                    portcullis_audit::report::jsonl_line(
                        u64::try_from(r.seq).unwrap_or(0),
                        &prev,
                        &hash,
                        &entry_body(r),
                        &mut line,
                    );
                    self.buf.clone().write_all(&line).map_err(err)?;
                }
            }
        }
        Ok(self.buf.take())
    }

    pub fn finish(self) -> Result<Vec<u8>, TrailError> {
        if let Some(w) = self.bundle {
            w.finish()
                .map_err(|e| TrailError::Malformed(e.to_string()))?;
        }
        Ok(self.buf.take())
    }
}

/// Writes an environment's full audit export to `path`. Returns the number of entries.
/// The newest `limit` entries of `scope` (an environment or the platform scope), with
/// `action` only when given, newest first, as the operator reads them (system context with
/// audit.read; what is pending is chained first).
pub async fn newest_entries(
    store: &Store,
    scope: EnvironmentId,
    action: Option<&str>,
    limit: i64,
) -> Result<Vec<audit_log::AuditEntry>, TrailError> {
    store.sequence(scope.as_uuid()).await?;
    let mut tx = store
        .tenant_as_system(scope, PermissionSet::of(&[Permission::AuditRead]), meta())
        .await?;
    let rows = audit_log::newest(&mut tx, action, limit).await?;
    tx.commit().await?;
    Ok(rows)
}

/// An entry as the CLI prints it with `--json`.
pub fn entry_json(e: &audit_log::AuditEntry) -> serde_json::Value {
    serde_json::json!({
        "audit_id": e.audit_id,
        "occurred_at": portcullis_store::audit_writer::rfc3339_micros(e.occurred_at),
        "actor_type": e.actor_type,
        "actor_id": e.actor_id,
        "action": e.action,
        "target_type": e.target_type,
        "target_id": e.target_id,
        "outcome": e.outcome,
        "before": e.before,
        "after": e.after,
        "request_id": e.request_id,
        "ip": e.ip,
        "user_agent": e.user_agent,
    })
}

pub async fn export_to_file(
    store: &Store,
    anchors: &Anchors,
    env: Uuid,
    format: &str,
    path: &std::path::Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, TrailError> {
    use std::io::Write;
    let format: ExportFormat = format.parse().map_err(TrailError::Malformed)?;
    let environment = EnvironmentId::from_uuid(env);
    // Audited first, in a transaction of its own, then chained: the file covers everything
    // committed before it, its own `audit.exported` entry included (as the API's export).
    let mut tx = store
        .tenant_as_system(environment, PermissionSet::all(), meta())
        .await?;
    tx.audit(
        portcullis_store::AuditEvent::success("audit.exported", "audit_log", env).after(
            serde_json::json!({ "format": format!("{format:?}").to_lowercase(), "via": "cli" }),
        ),
    )
    .await?;
    tx.commit().await?;
    store.sequence(env).await?;
    let mut tx = store
        .tenant_as_system(
            environment,
            PermissionSet::of(&[Permission::AuditRead]),
            meta(),
        )
        .await?;
    let checkpoints = audit_log::checkpoints(&mut tx).await?;
    let keys = published_keys(store).await?;
    let checkpoints = if format == ExportFormat::Bundle {
        bundle_checkpoints(&checkpoints, anchors, env).await?
    } else {
        vec![]
    };
    let io_err = |e: std::io::Error| TrailError::Malformed(format!("{}: {e}", path.display()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io_err)?);
    let mut writer = ExportWriter::new(format, env, &keys, &checkpoints)?;
    let total = audit_log::head(&mut tx)
        .await?
        .map_or(0, |(seq, _, _)| u64::try_from(seq).unwrap_or(0));
    let mut after = 0i64;
    let mut n = 0u64;
    loop {
        let rows = audit_log::stored_range(&mut tx, after, 5000).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        n += rows.len() as u64;
        file.write_all(&writer.write_rows(&rows)?).map_err(io_err)?;
        progress(n, total);
    }
    file.write_all(&writer.finish()?).map_err(io_err)?;
    file.flush().map_err(io_err)?;
    tx.commit().await?;
    Ok(n)
}
