-- Checkpoint signing keys are append-only (issue 11, item 1; controls L2, L4). A key row is
-- added once; afterwards the only change the database accepts is retiring it (setting
-- `retired_at` once, every other column unchanged). Deleting or truncating is refused, even
-- for the superuser (who would have to switch the trigger off, which verification and the
-- anchors then catch). A new row's `key_id` must be the key's own id: the first 8 bytes of
-- SHA-256 over the 32-byte public key, as 16 lowercase hex digits (crates/audit/FORMAT.md).
-- The code that publishes keys checks the id again, for rows written with triggers off.
-- Depends on nothing but the released migrations 0001-0009.

CREATE FUNCTION portcullis.audit_signing_keys_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.key_id IS DISTINCT FROM encode(substring(sha256(NEW.public_key) FROM 1 FOR 8), 'hex') THEN
            RAISE EXCEPTION 'audit_signing_keys: key id % is not the id of its public key', NEW.key_id
                USING ERRCODE = '23514';
        END IF;
        RETURN NEW;
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.retired_at IS NULL AND NEW.retired_at IS NOT NULL
           AND NEW.key_id = OLD.key_id AND NEW.public_key = OLD.public_key
           AND NEW.wrapped_seed = OLD.wrapped_seed AND NEW.kek = OLD.kek
           AND NEW.created_at = OLD.created_at THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit_signing_keys is append-only: a key can only be retired'
            USING ERRCODE = '42501';
    END IF;
    RAISE EXCEPTION 'audit_signing_keys is append-only: % refused', TG_OP
        USING ERRCODE = '42501';
END $$;

CREATE TRIGGER audit_signing_keys_no_update_delete BEFORE INSERT OR UPDATE OR DELETE ON audit_signing_keys
    FOR EACH ROW EXECUTE FUNCTION portcullis.audit_signing_keys_guard();
CREATE TRIGGER audit_signing_keys_no_truncate BEFORE TRUNCATE ON audit_signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis.refuse_audit_change();
