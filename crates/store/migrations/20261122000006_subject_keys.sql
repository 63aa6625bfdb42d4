-- Erasure without breaking the audit chain (D3). Personal data inside audit entries (the
-- request IP and user agent of a person's actions, personal fields of before/after) is sealed
-- under a key of its own per data subject and scope, and the entry hash covers the sealed
-- text. Erasing a subject deletes the key: the data becomes unreadable while every hash,
-- proof and checkpoint still verifies.
--
-- Subject keys are themselves sealed under the platform PII keyring, bound to their scope and
-- subject, so the database holds no usable key.
CREATE TABLE subject_keys (
    -- The audit scope: an environment, or the nil id for platform events (logins).
    environment_id   uuid NOT NULL,
    subject_id       uuid NOT NULL,
    -- Written into the header of every value sealed with this key. A subject who acts again
    -- after an erasure gets a new key with a new id, so old values report "erased", never
    -- "tampered".
    key_id           uuid NOT NULL UNIQUE,
    key_ciphertext   bytea NOT NULL,
    pii_key_version  integer NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (environment_id, subject_id)
);
ALTER TABLE subject_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE subject_keys FORCE ROW LEVEL SECURITY;
-- Same scope rule as the audit head: the transaction's environment, or the platform scope
-- when no environment is set.
CREATE POLICY subject_keys_scope ON subject_keys FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id())
           OR ((SELECT portcullis.environment_id()) IS NULL
               AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id())
                OR ((SELECT portcullis.environment_id()) IS NULL
                    AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid));
-- Erasure (deleting a key) needs the permission to manage members, checked here too (R8).
CREATE POLICY subject_keys_erase ON subject_keys AS RESTRICTIVE FOR DELETE TO portcullis_app
    USING ((SELECT portcullis.has_permission('members.manage')));
GRANT SELECT, INSERT, DELETE ON subject_keys TO portcullis_app;
-- The operator re-seals subject keys when the platform PII key is rotated
-- (`portcullis keys rotate-pii`): it may read them (they are sealed) and replace a key's sealed
-- form, never its id or owner.
CREATE POLICY subject_keys_operator ON subject_keys FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY subject_keys_reseal ON subject_keys FOR UPDATE TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE FUNCTION portcullis.subject_key_identity_fixed() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.environment_id <> OLD.environment_id OR NEW.subject_id <> OLD.subject_id OR NEW.key_id <> OLD.key_id THEN
        RAISE EXCEPTION 'a subject key keeps its scope, subject and id' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER subject_keys_identity_fixed BEFORE UPDATE ON subject_keys
    FOR EACH ROW EXECUTE FUNCTION portcullis.subject_key_identity_fixed();
