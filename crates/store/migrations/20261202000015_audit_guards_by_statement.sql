-- The audit guards check a sequencer batch as one set (issue 10, section 2; controls L2, L3).
--
-- Migration 0014 left the guards row by row: for a batch of k entries the database ran the
-- audit_log guard k times (three key lookups each, one a column-by-column comparison with the
-- pending original) and the pending-delete guard k times, each a PL/pgSQL call with its own
-- SECURITY DEFINER switch and settings. The checks are the same here, but each guard now runs
-- once per statement over the statement's transition table: one join per check.
--
--   audit_log INSERT      every new entry lies within its scope's head at the end of the
--                         statement, links to the entry before it, and is a faithful copy of a
--                         pending entry of the same scope and audit_id that still exists;
--   audit_heads UPDATE    every moved head keeps its scope, advances by one or more over
--                         entries that exist and link one to the next from the old head hash to
--                         the new one, with the frontier of the old one with each of their
--                         leaves pushed in order (the frontier arithmetic is written out in the
--                         loop, not called per entry);
--   audit_pending DELETE  every removed entry is in audit_log already.
--
-- Statement-level AFTER triggers fire when the whole statement (the sequencer's one statement
-- with its CTEs included) has run, exactly when the row-level AFTER triggers they replace fired,
-- so they see the same state. Each check joins the statement's rows to a table by its key, so the
-- guards plan only nested loops over index probes: a hash or merge join would read the whole
-- table (all of audit_log, every dead row of audit_pending) once per batch.
-- A statement that touches no row still runs its guard, over an empty set. Refusals are
-- unchanged: SQLSTATE 42501, a message starting "audit guard:", naming the first offending entry.

CREATE OR REPLACE FUNCTION portcullis.audit_log_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    AS $$
DECLARE
    bad record;
BEGIN
    SELECT a.seq, a.environment_id INTO bad
      FROM added a LEFT JOIN public.audit_heads h ON h.environment_id = a.environment_id
     WHERE h.seq IS NULL OR a.seq > h.seq
     ORDER BY a.environment_id, a.seq LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'audit guard: entry % of scope % is not appended by advancing its chain head in the same statement',
            bad.seq, bad.environment_id
            USING ERRCODE = '42501';
    END IF;
    SELECT a.seq, a.environment_id INTO bad
      FROM added a LEFT JOIN public.audit_log p
        ON p.environment_id = a.environment_id AND p.seq = a.seq - 1
     WHERE a.prev_hash IS DISTINCT FROM
           CASE WHEN a.seq = 1 THEN '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                ELSE p.entry_hash END
     ORDER BY a.environment_id, a.seq LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'audit guard: entry % of scope % does not link to the previous entry',
            bad.seq, bad.environment_id
            USING ERRCODE = '42501';
    END IF;
    SELECT a.seq, a.environment_id INTO bad
      FROM added a
     WHERE NOT EXISTS (
           SELECT 1 FROM public.audit_pending p
            WHERE p.environment_id = a.environment_id AND p.audit_id = a.audit_id
              AND p.occurred_at = a.occurred_at
              AND p.actor_type = a.actor_type AND p.actor_id IS NOT DISTINCT FROM a.actor_id
              AND p.action = a.action AND p.action_version = a.action_version
              AND p.target_type = a.target_type AND p.target_id IS NOT DISTINCT FROM a.target_id
              AND p.outcome = a.outcome
              AND p.before IS NOT DISTINCT FROM a.before AND p.after IS NOT DISTINCT FROM a.after
              AND p.request_id IS NOT DISTINCT FROM a.request_id
              AND p.ip IS NOT DISTINCT FROM a.ip AND p.user_agent IS NOT DISTINCT FROM a.user_agent)
     ORDER BY a.environment_id, a.seq LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'audit guard: entry % of scope % is not a faithful copy of a pending entry',
            bad.seq, bad.environment_id
            USING ERRCODE = '42501';
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION portcullis.audit_heads_guard_update() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    AS $$
DECLARE
    head record;
    entry record;
    expected_prev bytea;
    f bytea[];
    n integer;
    carry bytea;
    s bigint;
    size bigint;
BEGIN
    -- Each new row is the old row of the same scope, moved: a changed environment_id leaves a
    -- new row without its old one.
    SELECT o.environment_id, o.seq AS old_seq, n.seq AS new_seq INTO head
      FROM old_heads o FULL JOIN new_heads n ON n.environment_id = o.environment_id
     WHERE o.environment_id IS NULL OR n.environment_id IS NULL OR n.seq IS NULL OR n.seq <= o.seq
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'audit guard: the chain head of scope % may only advance (% to %)',
            head.environment_id, head.old_seq, head.new_seq
            USING ERRCODE = '42501';
    END IF;
    FOR head IN
        SELECT o.environment_id, o.seq AS old_seq, o.head_hash AS old_hash, o.frontier AS old_frontier,
               n.seq AS new_seq, n.head_hash AS new_hash, n.frontier AS new_frontier
          FROM old_heads o JOIN new_heads n ON n.environment_id = o.environment_id
         ORDER BY o.environment_id
    LOOP
        expected_prev := head.old_hash;
        f := head.old_frontier;
        size := head.old_seq;
        n := coalesce(cardinality(f), 0);
        IF n <> bit_count(size::bit(64)) THEN
            RAISE EXCEPTION 'audit guard: the Merkle frontier of scope % at % does not belong to its size',
                head.environment_id, head.old_seq
                USING ERRCODE = '42501';
        END IF;
        FOR entry IN
            SELECT a.seq, a.prev_hash, a.entry_hash FROM public.audit_log a
             WHERE a.environment_id = head.environment_id AND a.seq > head.old_seq AND a.seq <= head.new_seq
             ORDER BY a.seq
        LOOP
            IF entry.seq <> size + 1 OR entry.prev_hash IS DISTINCT FROM expected_prev THEN
                RAISE EXCEPTION 'audit guard: the chain head of scope % must name entry %, appended to the old head in the same statement',
                    head.environment_id, head.new_seq
                    USING ERRCODE = '42501';
            END IF;
            -- portcullis.audit_frontier_push, written out: each trailing one bit of the size
            -- merges the last frontier node with the carry.
            carry := sha256('\x00'::bytea || entry.entry_hash);
            s := size;
            WHILE s & 1 = 1 LOOP
                carry := sha256('\x01'::bytea || f[n] || carry);
                f := f[1:n - 1];
                n := n - 1;
                s := s >> 1;
            END LOOP;
            f := array_append(f, carry);
            n := n + 1;
            expected_prev := entry.entry_hash;
            size := entry.seq;
        END LOOP;
        IF size <> head.new_seq OR expected_prev IS DISTINCT FROM head.new_hash THEN
            RAISE EXCEPTION 'audit guard: the chain head of scope % must name entry %, appended to the old head in the same statement',
                head.environment_id, head.new_seq
                USING ERRCODE = '42501';
        END IF;
        IF head.new_frontier IS DISTINCT FROM f THEN
            RAISE EXCEPTION 'audit guard: the Merkle frontier of scope % at % is not the old frontier with entries % to % appended',
                head.environment_id, head.new_seq, head.old_seq + 1, head.new_seq
                USING ERRCODE = '42501';
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION portcullis.audit_pending_guard_delete() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    AS $$
DECLARE
    bad record;
BEGIN
    SELECT g.audit_id, g.environment_id INTO bad
      FROM removed g
     WHERE NOT EXISTS (SELECT 1 FROM public.audit_log a
                        WHERE a.environment_id = g.environment_id AND a.audit_id = g.audit_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'audit guard: pending entry % of scope % may only be removed once sequenced',
            bad.audit_id, bad.environment_id
            USING ERRCODE = '42501';
    END IF;
    RETURN NULL;
END
$$;

-- The guard role reads the rows it compares from the transition tables; from audit_log it reads
-- only what it did before (the chain columns, and audit_id to find a sequenced entry).

DROP TRIGGER audit_log_append_guard ON audit_log;
CREATE TRIGGER audit_log_append_guard AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT WHEN (pg_catalog.current_setting('is_superuser') <> 'on')
    EXECUTE FUNCTION portcullis.audit_log_guard();

DROP TRIGGER audit_heads_advance_guard ON audit_heads;
CREATE TRIGGER audit_heads_advance_guard AFTER UPDATE ON audit_heads
    REFERENCING OLD TABLE AS old_heads NEW TABLE AS new_heads
    FOR EACH STATEMENT WHEN (pg_catalog.current_setting('is_superuser') <> 'on')
    EXECUTE FUNCTION portcullis.audit_heads_guard_update();

DROP TRIGGER audit_pending_sequenced ON audit_pending;
CREATE TRIGGER audit_pending_sequenced AFTER DELETE ON audit_pending
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT WHEN (pg_catalog.current_setting('is_superuser') <> 'on')
    EXECUTE FUNCTION portcullis.audit_pending_guard_delete();
