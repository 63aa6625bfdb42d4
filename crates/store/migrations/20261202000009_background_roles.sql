-- Background roles (issue 9): while serving, the process holds no connection as the schema
-- owner. The audit checkpointer (with its signing key) and the key-rotation scheduler connect
-- as roles of their own, created by bootstrap before migrations run (LOGIN NOSUPERUSER
-- NOBYPASSRLS NOINHERIT, owning nothing). Each is granted exactly the columns its queries
-- read and write, and row-level security policies name it. The work inside an environment
-- (cutting a checkpoint, recording an anchor, rotating keys, re-encrypting) still runs as the
-- runtime role in that environment's transaction; these roles only find what is due, across
-- environments, and the checkpointer holds the wrapped signing seed. The boot self-check
-- (T7, crates/store/src/catalog.rs, BACKGROUND_ROLES) compares these grants and policies with
-- what the build expects, so an extra grant is a finding. The `*_operator` policies of the
-- schema owner stay for the operator CLI.
-- Depends on nothing but the released migrations 0001-0006.

GRANT USAGE ON SCHEMA public TO portcullis_checkpointer, portcullis_scheduler;

------------------------------------------------------------------------------------------
-- portcullis_checkpointer: which scopes have entries beyond their last checkpoint
-- (`audit_log::operator::uncheckpointed`), which checkpoints were never anchored
-- (`unanchored_checkpoints`), and the signing keys (`signing_keys`, `add_signing_key`,
-- `retire_other_keys`). Heads' hashes and frontiers, entries and subtrees stay out of reach.

GRANT SELECT (environment_id, seq) ON audit_heads TO portcullis_checkpointer;
CREATE POLICY audit_heads_checkpointer ON audit_heads
    FOR SELECT TO portcullis_checkpointer USING (true);

GRANT SELECT (environment_id, tree_size, issued_at, signed) ON audit_checkpoints TO portcullis_checkpointer;
CREATE POLICY audit_checkpoints_checkpointer ON audit_checkpoints
    FOR SELECT TO portcullis_checkpointer USING (true);

GRANT SELECT (environment_id, tree_size) ON audit_checkpoint_anchors TO portcullis_checkpointer;
CREATE POLICY audit_checkpoint_anchors_checkpointer ON audit_checkpoint_anchors
    FOR SELECT TO portcullis_checkpointer USING (true);

-- A new key is added unretired; an active key can only be retired, never revived or edited.
GRANT SELECT (key_id, public_key, wrapped_seed, kek, created_at, retired_at),
      INSERT (key_id, public_key, wrapped_seed, kek, created_at),
      UPDATE (retired_at)
   ON audit_signing_keys TO portcullis_checkpointer;
CREATE POLICY audit_signing_keys_checkpointer_read ON audit_signing_keys
    FOR SELECT TO portcullis_checkpointer USING (true);
CREATE POLICY audit_signing_keys_checkpointer_add ON audit_signing_keys
    FOR INSERT TO portcullis_checkpointer WITH CHECK (retired_at IS NULL);
CREATE POLICY audit_signing_keys_checkpointer_retire ON audit_signing_keys
    FOR UPDATE TO portcullis_checkpointer
    USING (retired_at IS NULL) WITH CHECK (retired_at IS NOT NULL);

------------------------------------------------------------------------------------------
-- portcullis_scheduler: unfinished re-encryption jobs (`vault::operator::unfinished_jobs`) and
-- environments whose data key is due (`due_for_rotation`). No KEK reference, no wrapped key.

GRANT SELECT (environment_id, job_id, started_at, finished_at) ON key_rotation_jobs TO portcullis_scheduler;
CREATE POLICY key_rotation_jobs_scheduler ON key_rotation_jobs
    FOR SELECT TO portcullis_scheduler USING (true);

GRANT SELECT (environment_id, rotated_at, rotate_after_days) ON environment_keys TO portcullis_scheduler;
CREATE POLICY environment_keys_scheduler ON environment_keys
    FOR SELECT TO portcullis_scheduler USING (true);
