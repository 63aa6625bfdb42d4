-- The database checks every audit append (issue 9, controls L2 and L3). Before this migration
-- the audit tables only refused UPDATE, DELETE and TRUNCATE; the chain itself was kept by the
-- writer (crates/store/src/audit_writer.rs). Someone running SQL as the runtime role could
-- therefore insert an entry at the next sequence number without advancing audit_heads (every
-- later append of the scope then fails on the primary key: denial of service), set
-- audit_heads to any sequence number, hash and frontier, or store subtree nodes ahead of the
-- log with wrong hashes (the writer's ON CONFLICT DO NOTHING would then keep them).
--
-- Now, at the end of every statement (AFTER ROW triggers fire once the whole statement,
-- including the writer's data-modifying CTEs, has run, and see all of its rows):
--   audit_log      an entry must be the head of its scope: audit_heads.seq = seq and
--                  head_hash = entry_hash, and prev_hash must be the previous entry's
--                  entry_hash (32 zero bytes for seq 1);
--   audit_heads    an UPDATE advances seq by exactly one, to an entry that exists with
--                  entry_hash = head_hash and prev_hash = the old head_hash, and the frontier
--                  is the old frontier with leaf SHA-256(0x00 || head_hash) pushed (RFC 6962,
--                  as crates/audit/src/merkle.rs keeps it); an INSERT creates only the empty
--                  head (seq 0, 32 zero bytes, no frontier);
--   audit_subtrees a node must cover entries that exist ((node_index + 1) << level <= head
--                  seq) and carry the right hash: level 8 from the 256 entry hashes, higher
--                  levels from the two child nodes (stored, or computed). The writer's node
--                  is completed by the head in the same statement; the proof builder
--                  (queries::audit_log::insert_subtree_nodes, runtime role) backfills nodes of
--                  logs written before nodes were stored, which this accepts because they are
--                  checked the same way.
-- What the database cannot check is that entry_hash is the hash of the entry's columns (that
-- needs canonical JSON, crates/audit/FORMAT.md §2): a forged entry that links correctly is
-- accepted, later appends keep working, and verification reports it.
--
-- Exempt: superusers only (current_setting('is_superuser'), evaluated in the WHEN clause as
-- the role running the statement). They can switch any trigger off anyway; the test support
-- and the audit benchmark bulk-load and tamper with chains as the superuser. The runtime role
-- and the owner are always checked.
--
-- The checks read rows the caller may not see (audit_log and audit_subtrees need audit.read),
-- so the three row-reading trigger functions are SECURITY DEFINER, owned by portcullis_guard
-- (the NOLOGIN role of 20261202000007, created by the bootstrap), with a fixed search_path and
-- no dynamic SQL; a trigger function cannot be called directly. portcullis_guard may read only
-- the chain columns of audit_log (environment_id, seq, prev_hash, entry_hash, never the
-- content), audit_heads and audit_subtrees, and only from inside a trigger
-- (pg_trigger_depth() > 0). Refusals raise SQLSTATE 42501 with a message starting
-- "audit guard:", which the store logs (StoreError::PolicyViolation, a 403).

-- The frontier after appending leaf `leaf` to a tree of `size` leaves with frontier `frontier`
-- (the roots of the perfect subtrees, one per set bit of size, largest first): like binary
-- addition, each trailing one bit of size merges the last frontier node with the carry.
-- NULL when frontier cannot belong to size.
CREATE FUNCTION portcullis.audit_frontier_push(frontier bytea[], size bigint, leaf bytea)
    RETURNS bytea[]
    LANGUAGE plpgsql IMMUTABLE STRICT
    SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    n integer := coalesce(cardinality(frontier), 0);
    f bytea[] := frontier;
    carry bytea := leaf;
    s bigint := size;
BEGIN
    IF s < 0 OR n <> bit_count(s::bit(64)) THEN
        RETURN NULL;
    END IF;
    WHILE s & 1 = 1 LOOP
        carry := sha256('\x01'::bytea || f[n] || carry);
        f := f[1:n - 1];
        n := n - 1;
        s := s >> 1;
    END LOOP;
    RETURN array_append(f, carry);
END
$$;

-- The hash a stored node (level, node_index) of `env` must have, or NULL if its entries do not
-- all exist: level 8 from the 256 entry hashes, higher levels from the child nodes, stored
-- ones when present (each was checked when it was inserted) or else computed.
CREATE FUNCTION portcullis.audit_expected_node(env uuid, node_level integer, idx bigint)
    RETURNS bytea
    LANGUAGE plpgsql STABLE STRICT
    SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    hashes bytea[];
    half bytea[];
    l bytea;
    r bytea;
BEGIN
    IF node_level < 8 OR node_level > 62 OR idx < 0 OR idx >= (1::bigint << (62 - node_level)) THEN
        RETURN NULL;
    END IF;
    IF node_level = 8 THEN
        SELECT array_agg(sha256('\x00'::bytea || a.entry_hash) ORDER BY a.seq) INTO hashes
          FROM public.audit_log a
         WHERE a.environment_id = env AND a.seq > idx * 256 AND a.seq <= (idx + 1) * 256;
        IF coalesce(cardinality(hashes), 0) <> 256 THEN
            RETURN NULL;
        END IF;
        WHILE cardinality(hashes) > 1 LOOP
            half := '{}';
            FOR i IN 1 .. cardinality(hashes) / 2 LOOP
                half := array_append(half, sha256('\x01'::bytea || hashes[2 * i - 1] || hashes[2 * i]));
            END LOOP;
            hashes := half;
        END LOOP;
        RETURN hashes[1];
    END IF;
    SELECT s.hash INTO l FROM public.audit_subtrees s
     WHERE s.environment_id = env AND s.level = node_level - 1 AND s.node_index = 2 * idx;
    IF l IS NULL THEN
        l := portcullis.audit_expected_node(env, node_level - 1, 2 * idx);
    END IF;
    SELECT s.hash INTO r FROM public.audit_subtrees s
     WHERE s.environment_id = env AND s.level = node_level - 1 AND s.node_index = 2 * idx + 1;
    IF r IS NULL THEN
        r := portcullis.audit_expected_node(env, node_level - 1, 2 * idx + 1);
    END IF;
    IF l IS NULL OR r IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN sha256('\x01'::bytea || l || r);
END
$$;

REVOKE ALL ON FUNCTION portcullis.audit_frontier_push(bytea[], bigint, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION portcullis.audit_expected_node(uuid, integer, bigint) FROM PUBLIC;

-- audit_log: the entry is the head of its scope at the end of the statement and links to the
-- previous entry.
CREATE FUNCTION portcullis.audit_log_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    head_seq bigint;
    head bytea;
    prev bytea;
BEGIN
    SELECT h.seq, h.head_hash INTO head_seq, head FROM public.audit_heads h
     WHERE h.environment_id = NEW.environment_id;
    IF head_seq IS DISTINCT FROM NEW.seq OR head IS DISTINCT FROM NEW.entry_hash THEN
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
    -- HOOK (issue 9, "the actor must be the signed identity"): that check is the
    -- audit_log_append policy of 20261202000007_signed_context.sql, which compares actor_type
    -- and actor_id with portcullis.actor_type() / portcullis.actor_id() of the verified
    -- context before the row exists. This trigger only keeps the chain; an actor check added
    -- here would compare NEW.actor_type / NEW.actor_id the same way.
    RETURN NULL;
END
$$;

-- audit_heads UPDATE: advances by one entry, to the entry inserted for it, with the right
-- Merkle frontier.
CREATE FUNCTION portcullis.audit_heads_guard_update() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    entry_prev bytea;
    entry_hash bytea;
BEGIN
    IF NEW.environment_id IS DISTINCT FROM OLD.environment_id OR NEW.seq IS DISTINCT FROM OLD.seq + 1 THEN
        RAISE EXCEPTION 'audit guard: the chain head of scope % may only advance by one entry (% to %)',
            OLD.environment_id, OLD.seq, NEW.seq
            USING ERRCODE = '42501';
    END IF;
    SELECT a.prev_hash, a.entry_hash INTO entry_prev, entry_hash FROM public.audit_log a
     WHERE a.environment_id = NEW.environment_id AND a.seq = NEW.seq;
    IF entry_hash IS DISTINCT FROM NEW.head_hash OR entry_prev IS DISTINCT FROM OLD.head_hash THEN
        RAISE EXCEPTION 'audit guard: the chain head of scope % must name entry %, appended to the old head in the same statement',
            NEW.environment_id, NEW.seq
            USING ERRCODE = '42501';
    END IF;
    IF NEW.frontier IS DISTINCT FROM
       portcullis.audit_frontier_push(OLD.frontier, OLD.seq, sha256('\x00'::bytea || NEW.head_hash)) THEN
        RAISE EXCEPTION 'audit guard: the Merkle frontier of scope % at % is not the old frontier with entry % appended',
            NEW.environment_id, NEW.seq, NEW.seq
            USING ERRCODE = '42501';
    END IF;
    RETURN NULL;
END
$$;

-- audit_heads INSERT: only the empty head a scope starts from.
CREATE FUNCTION portcullis.audit_heads_guard_insert() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp
    AS $$
BEGIN
    IF NEW.seq IS DISTINCT FROM 0
       OR NEW.head_hash IS DISTINCT FROM '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
       OR coalesce(cardinality(NEW.frontier), -1) <> 0 THEN
        RAISE EXCEPTION 'audit guard: a chain head of scope % may only be created empty', NEW.environment_id
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;

-- audit_subtrees: the node covers existing entries and has the hash they give.
CREATE FUNCTION portcullis.audit_subtrees_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    head_seq bigint;
BEGIN
    SELECT h.seq INTO head_seq FROM public.audit_heads h WHERE h.environment_id = NEW.environment_id;
    IF head_seq IS NULL OR (NEW.node_index::numeric + 1) * power(2::numeric, NEW.level) > head_seq THEN
        RAISE EXCEPTION 'audit guard: subtree node (%, %) of scope % covers entries beyond the chain head',
            NEW.level, NEW.node_index, NEW.environment_id
            USING ERRCODE = '42501';
    END IF;
    IF portcullis.audit_expected_node(NEW.environment_id, NEW.level, NEW.node_index) IS DISTINCT FROM NEW.hash THEN
        RAISE EXCEPTION 'audit guard: subtree node (%, %) of scope % does not have the hash of its entries',
            NEW.level, NEW.node_index, NEW.environment_id
            USING ERRCODE = '42501';
    END IF;
    RETURN NULL;
END
$$;

-- The definer functions run as portcullis_guard: it must own them (and may then lose CREATE).
GRANT USAGE ON SCHEMA public, portcullis TO portcullis_guard;
GRANT CREATE ON SCHEMA portcullis TO portcullis_guard;
ALTER FUNCTION portcullis.audit_log_guard() OWNER TO portcullis_guard;
ALTER FUNCTION portcullis.audit_heads_guard_update() OWNER TO portcullis_guard;
ALTER FUNCTION portcullis.audit_subtrees_guard() OWNER TO portcullis_guard;
REVOKE CREATE ON SCHEMA portcullis FROM portcullis_guard;
GRANT EXECUTE ON FUNCTION portcullis.audit_frontier_push(bytea[], bigint, bytea),
    portcullis.audit_expected_node(uuid, integer, bigint) TO portcullis_guard;

-- What the guard functions read, as portcullis_guard, only from inside a trigger.
GRANT SELECT (environment_id, seq, prev_hash, entry_hash) ON audit_log TO portcullis_guard;
GRANT SELECT ON audit_heads, audit_subtrees TO portcullis_guard;
CREATE POLICY audit_log_guard ON audit_log FOR SELECT TO portcullis_guard
    USING (pg_catalog.pg_trigger_depth() > 0);
CREATE POLICY audit_heads_guard ON audit_heads FOR SELECT TO portcullis_guard
    USING (pg_catalog.pg_trigger_depth() > 0);
CREATE POLICY audit_subtrees_guard ON audit_subtrees FOR SELECT TO portcullis_guard
    USING (pg_catalog.pg_trigger_depth() > 0);

CREATE TRIGGER audit_log_append_guard AFTER INSERT ON audit_log
    FOR EACH ROW WHEN (pg_catalog.current_setting('is_superuser') <> 'on')
    EXECUTE FUNCTION portcullis.audit_log_guard();
CREATE TRIGGER audit_heads_advance_guard AFTER UPDATE ON audit_heads
    FOR EACH ROW WHEN (pg_catalog.current_setting('is_superuser') <> 'on')
    EXECUTE FUNCTION portcullis.audit_heads_guard_update();
CREATE TRIGGER audit_heads_create_guard BEFORE INSERT ON audit_heads
    FOR EACH ROW WHEN (pg_catalog.current_setting('is_superuser') <> 'on')
    EXECUTE FUNCTION portcullis.audit_heads_guard_insert();
CREATE TRIGGER audit_subtrees_append_guard AFTER INSERT ON audit_subtrees
    FOR EACH ROW WHEN (pg_catalog.current_setting('is_superuser') <> 'on')
    EXECUTE FUNCTION portcullis.audit_subtrees_guard();
