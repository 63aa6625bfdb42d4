-- The audit sequencer (issue 10, section 2; controls L2, L3, L7).
--
-- Before this migration every audited transaction locked its scope's audit_heads row, hashed
-- its entry onto the chain and advanced the head before committing: one scope's audited writes
-- ran one at a time, for as long as each transaction took to commit. Now the write path and the
-- chain are separated, as transparency logs separate submission from integration:
--
--   audit_pending  the mutation's transaction inserts its entry here (content only: no
--                  sequence number, no hashes), as the runtime role and under the signed
--                  context of its scope and actor (the policy audit_log_append had). It takes
--                  no shared lock, so entries of one scope are written concurrently; it commits
--                  or rolls back with the mutation (L7).
--   sequencer      portcullis_sequencer (a LOGIN role of its own, created by bootstrap like the
--                  other background roles) locks a scope's head row, reads its pending
--                  entries in pending_id order, gives them the next sequence numbers, hashes
--                  them onto the chain and the Merkle frontier (crates/store/src/sequencer.rs),
--                  and in one transaction inserts them into audit_log with the head advanced
--                  (one statement), then deletes them from audit_pending.
--
-- The database still checks every append (migration 0008's guards, revised here for batches):
--   audit_log        an entry lies within its scope's head at the end of the statement
--                    (seq <= head seq), links to the previous entry, and is a faithful copy of
--                    a pending entry of the same scope and audit_id that still exists. Entries
--                    up to the old head exist already (primary key), so a new entry can only
--                    be one that the same statement's head advance covers.
--   audit_heads      an UPDATE advances seq by one or more, over entries that exist and link
--                    one to the next from the old head hash to the new one, with the frontier
--                    of the old one with each of their leaves pushed in order.
--   audit_pending    refuses UPDATE and TRUNCATE; a DELETE is refused unless the entry is in
--                    audit_log already (it was sequenced): nobody, the sequencer included,
--                    can drop a pending entry unsequenced.
-- Only portcullis_sequencer may insert into audit_log and create or advance heads: the runtime
-- role loses INSERT on audit_log and INSERT, UPDATE on audit_heads (it keeps reading heads,
-- and inserting subtree nodes, which the proof builder backfills and the guard checks).
--
-- What the database cannot check (as before): that entry_hash is the hash of the entry's
-- columns (canonical JSON, crates/audit/FORMAT.md); verification does. A superuser can switch
-- triggers off and delete pending entries; only anchored checkpoints and the pending alert of
-- `audit verify` (entries pending longer than the alert age) speak to that (docs/AUDIT.md).

CREATE TABLE audit_pending (
    -- Submission order within the node's view; sequencing follows it. Not gapless (a rolled
    -- back transaction leaves a hole), and not part of the chain.
    pending_id      bigint GENERATED ALWAYS AS IDENTITY,
    environment_id  uuid NOT NULL,
    audit_id        uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    actor_type      text NOT NULL CHECK (actor_type IN ('identity','api_token','system','anonymous')),
    actor_id        uuid,
    action          text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    action_version  smallint NOT NULL DEFAULT 1,
    target_type     text NOT NULL,
    target_id       text,
    outcome         text NOT NULL CHECK (outcome IN ('success','failure','denied')),
    before          jsonb,
    after           jsonb,
    request_id      text,
    ip              text,
    user_agent      text,
    PRIMARY KEY (environment_id, pending_id),
    UNIQUE (environment_id, audit_id)
);
-- A queue: rows live for milliseconds, so dead ones pile up unless vacuumed often (a batch's
-- index scan walks past them). Vacuumed after every 1,000 deleted rows, whatever the size.
ALTER TABLE audit_pending SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                               autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_cost_delay = 0);

ALTER TABLE audit_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_pending FORCE ROW LEVEL SECURITY;

-- Submitted under the signed context of its scope and actor (L2), like audit_log_append.
CREATE POLICY audit_pending_submit ON audit_pending FOR INSERT TO portcullis_app WITH CHECK (
    (environment_id = (SELECT portcullis.environment_id())
     OR ((SELECT portcullis.environment_id()) IS NULL
         AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid))
    AND actor_type = COALESCE((SELECT portcullis.actor_type()), 'anonymous')
    AND actor_id IS NOT DISTINCT FROM (SELECT portcullis.actor_id()));
GRANT INSERT (environment_id, audit_id, occurred_at, actor_type, actor_id, action, action_version,
              target_type, target_id, outcome, before, after, request_id, ip, user_agent)
    ON audit_pending TO portcullis_app;

-- Nothing is edited while pending.
CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending
    FOR EACH ROW EXECUTE FUNCTION portcullis.refuse_audit_change();
CREATE TRIGGER audit_pending_no_truncate BEFORE TRUNCATE ON audit_pending
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis.refuse_audit_change();

------------------------------------------------------------------------------------------
-- The runtime role no longer writes the chain.

REVOKE INSERT ON audit_log FROM portcullis_app;
REVOKE INSERT, UPDATE ON audit_heads FROM portcullis_app;
DROP POLICY audit_log_append ON audit_log;
-- The last FOR ALL policy of the runtime role (migration 0011 left it for this one).
DROP POLICY audit_heads_scope ON audit_heads;
CREATE POLICY audit_heads_read ON audit_heads FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id())
           OR ((SELECT portcullis.environment_id()) IS NULL
               AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid));

-- A person reads their own entries of the platform scope (sign-ins, failed sign-ins against
-- their account, password changes, session revocations: issue 12, item 4), in their account
-- context only.
CREATE POLICY audit_log_own_platform ON audit_log FOR SELECT TO portcullis_app
    USING (environment_id = '00000000-0000-0000-0000-000000000000'::uuid
           AND (SELECT portcullis.environment_id()) IS NULL
           AND (SELECT portcullis.purpose()) = 'account'
           AND actor_type = 'identity'
           AND actor_id = (SELECT portcullis.identity_id()));

------------------------------------------------------------------------------------------
-- portcullis_sequencer: every scope's pending entries, the chain columns it appends, the
-- heads. No other table.

GRANT USAGE ON SCHEMA public TO portcullis_sequencer;
GRANT SELECT, DELETE ON audit_pending TO portcullis_sequencer;
CREATE POLICY audit_pending_sequencer_read ON audit_pending FOR SELECT TO portcullis_sequencer
    USING (true);
CREATE POLICY audit_pending_sequencer_done ON audit_pending FOR DELETE TO portcullis_sequencer
    USING (true);
GRANT INSERT ON audit_log TO portcullis_sequencer;
CREATE POLICY audit_log_sequencer ON audit_log FOR INSERT TO portcullis_sequencer
    WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE ON audit_heads TO portcullis_sequencer;
CREATE POLICY audit_heads_sequencer_read ON audit_heads FOR SELECT TO portcullis_sequencer
    USING (true);
CREATE POLICY audit_heads_sequencer_create ON audit_heads FOR INSERT TO portcullis_sequencer
    WITH CHECK (true);
CREATE POLICY audit_heads_sequencer_advance ON audit_heads FOR UPDATE TO portcullis_sequencer
    USING (true) WITH CHECK (true);
GRANT INSERT ON audit_subtrees TO portcullis_sequencer;
CREATE POLICY audit_subtrees_sequencer ON audit_subtrees FOR INSERT TO portcullis_sequencer
    WITH CHECK (true);

------------------------------------------------------------------------------------------
-- The guards, for batches.

-- audit_log: within the head at the end of the statement, linked to the previous entry, and a
-- faithful copy of a pending entry that still exists.
CREATE OR REPLACE FUNCTION portcullis.audit_log_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off
    AS $$
DECLARE
    head_seq bigint;
    prev bytea;
    copied boolean;
BEGIN
    SELECT h.seq INTO head_seq FROM public.audit_heads h
     WHERE h.environment_id = NEW.environment_id;
    IF head_seq IS NULL OR NEW.seq > head_seq THEN
        RAISE EXCEPTION 'audit guard: entry % of scope % is not appended by advancing its chain head in the same statement',
            NEW.seq, NEW.environment_id
            USING ERRCODE = '42501';
    END IF;
    IF NEW.seq = 1 THEN
        prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    ELSE
        SELECT a.entry_hash INTO prev FROM public.audit_log a
         WHERE a.environment_id = NEW.environment_id AND a.seq = NEW.seq - 1;
    END IF;
    IF prev IS DISTINCT FROM NEW.prev_hash THEN
        RAISE EXCEPTION 'audit guard: entry % of scope % does not link to the previous entry',
            NEW.seq, NEW.environment_id
            USING ERRCODE = '42501';
    END IF;
    SELECT true INTO copied FROM public.audit_pending p
     WHERE p.environment_id = NEW.environment_id AND p.audit_id = NEW.audit_id
       AND p.occurred_at = NEW.occurred_at
       AND p.actor_type = NEW.actor_type AND p.actor_id IS NOT DISTINCT FROM NEW.actor_id
       AND p.action = NEW.action AND p.action_version = NEW.action_version
       AND p.target_type = NEW.target_type AND p.target_id IS NOT DISTINCT FROM NEW.target_id
       AND p.outcome = NEW.outcome
       AND p.before IS NOT DISTINCT FROM NEW.before AND p.after IS NOT DISTINCT FROM NEW.after
       AND p.request_id IS NOT DISTINCT FROM NEW.request_id
       AND p.ip IS NOT DISTINCT FROM NEW.ip AND p.user_agent IS NOT DISTINCT FROM NEW.user_agent;
    IF copied IS NULL THEN
        RAISE EXCEPTION 'audit guard: entry % of scope % is not a faithful copy of a pending entry',
            NEW.seq, NEW.environment_id
            USING ERRCODE = '42501';
    END IF;
    RETURN NULL;
END
$$;

-- audit_heads UPDATE: advances over one or more entries, linked from the old head to the new,
-- with each of their leaves pushed onto the frontier in order.
CREATE OR REPLACE FUNCTION portcullis.audit_heads_guard_update() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off
    AS $$
DECLARE
    expected_prev bytea := OLD.head_hash;
    frontier bytea[] := OLD.frontier;
    size bigint := OLD.seq;
    entry record;
BEGIN
    IF NEW.environment_id IS DISTINCT FROM OLD.environment_id OR NEW.seq IS NULL OR NEW.seq <= OLD.seq THEN
        RAISE EXCEPTION 'audit guard: the chain head of scope % may only advance (% to %)',
            OLD.environment_id, OLD.seq, NEW.seq
            USING ERRCODE = '42501';
    END IF;
    FOR entry IN
        SELECT a.seq, a.prev_hash, a.entry_hash FROM public.audit_log a
         WHERE a.environment_id = NEW.environment_id AND a.seq > OLD.seq AND a.seq <= NEW.seq
         ORDER BY a.seq
    LOOP
        IF entry.seq <> size + 1 OR entry.prev_hash IS DISTINCT FROM expected_prev THEN
            RAISE EXCEPTION 'audit guard: the chain head of scope % must name entry %, appended to the old head in the same statement',
                NEW.environment_id, NEW.seq
                USING ERRCODE = '42501';
        END IF;
        frontier := portcullis.audit_frontier_push(frontier, size, sha256('\x00'::bytea || entry.entry_hash));
        expected_prev := entry.entry_hash;
        size := entry.seq;
    END LOOP;
    IF size <> NEW.seq OR expected_prev IS DISTINCT FROM NEW.head_hash THEN
        RAISE EXCEPTION 'audit guard: the chain head of scope % must name entry %, appended to the old head in the same statement',
            NEW.environment_id, NEW.seq
            USING ERRCODE = '42501';
    END IF;
    IF NEW.frontier IS DISTINCT FROM frontier THEN
        RAISE EXCEPTION 'audit guard: the Merkle frontier of scope % at % is not the old frontier with entries % to % appended',
            NEW.environment_id, NEW.seq, OLD.seq + 1, NEW.seq
            USING ERRCODE = '42501';
    END IF;
    RETURN NULL;
END
$$;

-- audit_pending DELETE: only once sequenced.
CREATE FUNCTION portcullis.audit_pending_guard_delete() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.audit_log a
                    WHERE a.environment_id = OLD.environment_id AND a.audit_id = OLD.audit_id) THEN
        RAISE EXCEPTION 'audit guard: pending entry % of scope % may only be removed once sequenced',
            OLD.audit_id, OLD.environment_id
            USING ERRCODE = '42501';
    END IF;
    RETURN NULL;
END
$$;
-- Owned by portcullis_guard like the other guards (which needs CREATE on the schema for the
-- moment of the change).
GRANT CREATE ON SCHEMA portcullis TO portcullis_guard;
ALTER FUNCTION portcullis.audit_pending_guard_delete() OWNER TO portcullis_guard;
REVOKE CREATE ON SCHEMA portcullis FROM portcullis_guard;

-- The guards look rows up by key, once per row of a batch. Their plans are cached, and must not
-- turn into a scan of the table when its statistics are stale (a queue table's size swings; a
-- server with autovacuum off never refreshes them): a sequential scan per checked row makes a
-- batch quadratic. So every guard, the older ones too, plans without sequential scans.
ALTER FUNCTION portcullis.audit_subtrees_guard() SET enable_seqscan = off;
ALTER FUNCTION portcullis.audit_expected_node(uuid, integer, bigint) SET enable_seqscan = off;

-- What the guards read as portcullis_guard, only from inside a trigger: pending entries in
-- full (to compare), and audit_id of sequenced entries.
GRANT SELECT ON audit_pending TO portcullis_guard;
GRANT SELECT (audit_id) ON audit_log TO portcullis_guard;
CREATE POLICY audit_pending_guard ON audit_pending FOR SELECT TO portcullis_guard
    USING (pg_catalog.pg_trigger_depth() > 0);

CREATE TRIGGER audit_pending_sequenced AFTER DELETE ON audit_pending
    FOR EACH ROW WHEN (pg_catalog.current_setting('is_superuser') <> 'on')
    EXECUTE FUNCTION portcullis.audit_pending_guard_delete();

-- One sequencer per scope at a time: the head row, locked FOR UPDATE. Row locks need UPDATE on
-- the table, which only portcullis_sequencer holds on audit_heads, so SQL run as the runtime
-- role cannot hold a scope's lock to stall it (an advisory lock could be taken by anyone).
