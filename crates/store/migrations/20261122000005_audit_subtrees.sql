-- Stored Merkle subtree hashes, so inclusion and consistency proofs need O(log n) rows instead
-- of every entry hash (L3), and a record of which checkpoints reached the anchor store (L4).
--
-- audit_subtrees holds the root of every perfect, aligned subtree of 2^level leaves, level >= 8
-- (256 entries), covering leaves [node_index * 2^level, (node_index + 1) * 2^level). The writer
-- inserts the nodes an append completes (when the new size is a multiple of 256) in the same
-- statement that advances audit_heads; proofs read them and fill in missing ones (logs written
-- before this migration) from the entry hashes. They are an untrusted acceleration: a proof
-- built from a wrong node fails verification against the signed checkpoint.
--
-- Both tables are append-only and declared like audit_log / audit_checkpoints: RLS enabled and
-- forced, tenant policies, the runtime role holds only SELECT and INSERT, triggers refuse
-- UPDATE, DELETE and TRUNCATE. No foreign key to environments: they outlive it like the log.

CREATE TABLE audit_subtrees (
    environment_id  uuid NOT NULL,
    level           smallint NOT NULL CHECK (level BETWEEN 8 AND 63),
    node_index      bigint NOT NULL CHECK (node_index >= 0),
    hash            bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (environment_id, level, node_index)
);

-- One row per checkpoint that was written to the anchor store; the checkpointer re-anchors
-- checkpoints without one (the anchor store was down when they were cut). No foreign key to
-- audit_checkpoints: like the anchors themselves, this record stays when the log is tampered with.
CREATE TABLE audit_checkpoint_anchors (
    environment_id  uuid NOT NULL,
    tree_size       bigint NOT NULL,
    anchored_at     timestamptz NOT NULL,
    PRIMARY KEY (environment_id, tree_size)
);

ALTER TABLE audit_subtrees ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_subtrees FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoint_anchors ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoint_anchors FORCE ROW LEVEL SECURITY;

-- Written by every append of its scope (like audit_log_append, including the platform scope),
-- read with audit.read inside the environment (like audit_log_read).
CREATE POLICY audit_subtrees_append ON audit_subtrees FOR INSERT TO portcullis_app WITH CHECK (
    environment_id = (SELECT portcullis.environment_id())
    OR ((SELECT portcullis.environment_id()) IS NULL
        AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid));
CREATE POLICY audit_subtrees_read ON audit_subtrees FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('audit.read')));

CREATE POLICY audit_checkpoint_anchors_tenant ON audit_checkpoint_anchors FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
-- The checkpointer runs as the schema owner to find checkpoints not yet anchored.
CREATE POLICY audit_checkpoint_anchors_operator ON audit_checkpoint_anchors FOR SELECT TO CURRENT_USER USING (true);

CREATE TRIGGER audit_subtrees_no_update_delete BEFORE UPDATE OR DELETE ON audit_subtrees
    FOR EACH ROW EXECUTE FUNCTION portcullis.refuse_audit_change();
CREATE TRIGGER audit_subtrees_no_truncate BEFORE TRUNCATE ON audit_subtrees
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis.refuse_audit_change();
CREATE TRIGGER audit_checkpoint_anchors_no_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoint_anchors
    FOR EACH ROW EXECUTE FUNCTION portcullis.refuse_audit_change();
CREATE TRIGGER audit_checkpoint_anchors_no_truncate BEFORE TRUNCATE ON audit_checkpoint_anchors
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis.refuse_audit_change();

GRANT SELECT, INSERT ON audit_subtrees, audit_checkpoint_anchors TO portcullis_app;
