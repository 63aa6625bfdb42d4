-- Personal data at rest (E2): identity emails and display names, and invitation emails, are
-- sealed under the platform PII keyring and found by blind index (an HMAC of the normalised
-- email under a platform index key), so neither the database nor a dump holds them in clear.
--
-- Expand step: the plaintext columns stay (nullable) so rows written before this migration keep
-- their data; the server seals them at start (see `portcullis_store::pii::seal_legacy`) and
-- clears the plaintext. A later migration drops the columns.

-- Platform keys: data keys that belong to no environment, stored only wrapped by the KEK.
--   pii          versioned; seals identity and invitation personal data
--   email_index  the blind-index key (one version: changing it means re-indexing every row)
CREATE TABLE platform_keys (
    purpose     text NOT NULL CHECK (purpose IN ('pii', 'email_index')),
    version     integer NOT NULL CHECK (version >= 1),
    wrapped     bytea NOT NULL,
    kek         jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (purpose, version)
);
ALTER TABLE platform_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform_keys FORCE ROW LEVEL SECURITY;
-- Wrapped keys are useless without the KEK. The runtime role may read them and create the
-- first version of each on first use; later versions and rewraps are the operator's.
CREATE POLICY platform_keys_read ON platform_keys FOR SELECT TO portcullis_app USING (true);
CREATE POLICY platform_keys_create ON platform_keys FOR INSERT TO portcullis_app WITH CHECK (version = 1);
CREATE POLICY platform_keys_operator ON platform_keys FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true);
GRANT SELECT, INSERT ON platform_keys TO portcullis_app;

CREATE FUNCTION portcullis.login_email_index() RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT decode(NULLIF(current_setting('portcullis.login_email_index', true), ''), 'hex') $$;

ALTER TABLE identities ALTER COLUMN email DROP NOT NULL;
ALTER TABLE identities ALTER COLUMN display_name DROP NOT NULL;
ALTER TABLE identities ADD COLUMN email_index bytea CHECK (length(email_index) = 32);
ALTER TABLE identities ADD COLUMN email_ciphertext bytea;
ALTER TABLE identities ADD COLUMN display_name_ciphertext bytea;
ALTER TABLE identities ADD COLUMN pii_key_version integer;
ALTER TABLE identities ADD CONSTRAINT identities_pii_one_form CHECK (
    (email IS NULL) = (email_ciphertext IS NOT NULL)
    AND (display_name IS NULL) = (display_name_ciphertext IS NOT NULL)
    AND (email_ciphertext IS NULL) = (email_index IS NULL)
    AND (email_ciphertext IS NULL) = (pii_key_version IS NULL)
    AND (email_ciphertext IS NULL) = (display_name_ciphertext IS NULL));
CREATE UNIQUE INDEX identities_email_index_key ON identities (email_index);

-- Login finds the account by blind index; the plaintext branch serves rows not yet sealed.
DROP POLICY identities_visible ON identities;
DROP POLICY identities_update ON identities;
CREATE POLICY identities_visible ON identities FOR SELECT TO portcullis_app USING (
    identity_id = (SELECT portcullis.identity_id())
    OR email_index = (SELECT portcullis.login_email_index())
    OR email = (SELECT portcullis.login_email())
    OR EXISTS (SELECT 1 FROM memberships m
               WHERE m.identity_id = identities.identity_id
                 AND m.environment_id = (SELECT portcullis.environment_id())));
CREATE POLICY identities_update ON identities FOR UPDATE TO portcullis_app
    USING (identity_id = (SELECT portcullis.identity_id())
           OR email_index = (SELECT portcullis.login_email_index())
           OR email = (SELECT portcullis.login_email()))
    WITH CHECK (identity_id = (SELECT portcullis.identity_id())
                OR email_index = (SELECT portcullis.login_email_index())
                OR email = (SELECT portcullis.login_email()));

ALTER TABLE invitations ALTER COLUMN email DROP NOT NULL;
ALTER TABLE invitations ADD COLUMN email_index bytea CHECK (length(email_index) = 32);
ALTER TABLE invitations ADD COLUMN email_ciphertext bytea;
ALTER TABLE invitations ADD COLUMN pii_key_version integer;
ALTER TABLE invitations ADD CONSTRAINT invitations_pii_one_form CHECK (
    (email IS NULL) = (email_ciphertext IS NOT NULL)
    AND (email_ciphertext IS NULL) = (email_index IS NULL)
    AND (email_ciphertext IS NULL) = (pii_key_version IS NULL));

-- The operator seals rows written before this migration. It may read these tables (only
-- sealed values and hashes once sealing is done; PostgreSQL also checks an updated row against
-- the read policy) but may update only rows still holding plaintext, and only to clear it.
CREATE POLICY identities_operator ON identities FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY identities_seal_legacy ON identities FOR UPDATE TO CURRENT_USER
    USING (email IS NOT NULL) WITH CHECK (email IS NULL AND display_name IS NULL);
CREATE POLICY invitations_operator ON invitations FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY invitations_seal_legacy ON invitations FOR UPDATE TO CURRENT_USER
    USING (email IS NOT NULL) WITH CHECK (email IS NULL);
-- Sessions an earlier version wrote keep their IP and user agent in clear; the operator finds
-- them (read only: token hashes do not authenticate) and each is sealed by its own account.
CREATE POLICY sessions_operator ON sessions FOR SELECT TO CURRENT_USER USING (true);
