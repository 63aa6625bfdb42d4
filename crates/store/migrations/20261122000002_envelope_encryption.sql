-- Envelope encryption (E2, E4, E5): per-environment keyrings of versioned data keys, stored
-- only wrapped by a key-encryption key (KEK); encrypted columns for customer content and
-- secrets; resumable re-encryption jobs.
--
-- Expand step: documents.body stays (nullable) so rows written before this migration keep
-- reading; the re-encryption job moves them into body_ciphertext and clears body. A later
-- migration drops the column once no deployment has plaintext rows left.

CREATE OR REPLACE FUNCTION portcullis.known_permissions() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY['environment.read','environment.manage','environment.delete','ownership.transfer',
                       'members.read','members.manage','roles.manage','tokens.manage','audit.read',
                       'projects.read','projects.manage','documents.read','documents.write',
                       'documents.delete','approvals.decide','keys.manage','integrations.read',
                       'integrations.manage'] $$;

CREATE TABLE environment_keys (
    environment_id       uuid PRIMARY KEY REFERENCES environments ON DELETE CASCADE,
    -- Embedded in every ciphertext header; names this keyring.
    keyring_id           uuid NOT NULL UNIQUE,
    -- The KEK protecting this environment's data keys (a KekRef as JSON).
    kek                  jsonb NOT NULL,
    active_version       integer NOT NULL CHECK (active_version >= 1),
    -- Versions below this can no longer decrypt (retired after re-encryption).
    min_decrypt_version  integer NOT NULL DEFAULT 1 CHECK (min_decrypt_version BETWEEN 1 AND active_version),
    rotate_after_days    integer NOT NULL DEFAULT 90 CHECK (rotate_after_days BETWEEN 1 AND 3650),
    rotated_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);

CREATE TABLE data_keys (
    environment_id  uuid NOT NULL REFERENCES environment_keys ON DELETE CASCADE,
    version         integer NOT NULL CHECK (version >= 1),
    -- The data key wrapped by `kek`; the plaintext key never reaches the database.
    wrapped         bytea NOT NULL,
    kek             jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    retired_at      timestamptz,
    PRIMARY KEY (environment_id, version)
);

ALTER TABLE documents ALTER COLUMN body DROP NOT NULL;
ALTER TABLE documents ADD COLUMN body_ciphertext bytea;
ALTER TABLE documents ADD COLUMN body_key_version integer;
ALTER TABLE documents ADD CONSTRAINT documents_body_one_form
    CHECK ((body IS NULL) <> (body_ciphertext IS NULL) AND (body_ciphertext IS NULL) = (body_key_version IS NULL));
CREATE INDEX documents_body_key_version ON documents (environment_id, body_key_version);

CREATE TABLE integrations (
    environment_id          uuid NOT NULL REFERENCES environments ON DELETE CASCADE,
    integration_id          uuid NOT NULL,
    kind                    text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{1,39}$'),
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    credentials_ciphertext  bytea NOT NULL,
    credentials_key_version integer NOT NULL,
    -- Non-secret hint for humans: the last four characters.
    credentials_hint        text NOT NULL,
    created_by              uuid NOT NULL,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    PRIMARY KEY (environment_id, integration_id),
    UNIQUE (environment_id, name)
);
CREATE INDEX integrations_key_version ON integrations (environment_id, credentials_key_version);

-- The environment's own model-provider key (bring-your-own-key, used by the LLM gateway).
CREATE TABLE model_keys (
    environment_id   uuid PRIMARY KEY REFERENCES environments ON DELETE CASCADE,
    provider         text NOT NULL CHECK (provider ~ '^[a-z][a-z0-9_]{1,39}$'),
    key_ciphertext   bytea NOT NULL,
    key_key_version  integer NOT NULL,
    key_hint         text NOT NULL,
    updated_by       uuid NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- Re-encryption after a rotation: progress is committed with each batch, so a crashed job
-- resumes where it stopped and re-running a finished batch changes nothing.
CREATE TABLE key_rotation_jobs (
    environment_id  uuid NOT NULL REFERENCES environment_keys ON DELETE CASCADE,
    job_id          uuid NOT NULL,
    target_version  integer NOT NULL,
    -- Per encrypted column: the last row id processed.
    progress        jsonb NOT NULL DEFAULT '{}',
    rows_done       bigint NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    PRIMARY KEY (environment_id, job_id)
);
CREATE UNIQUE INDEX key_rotation_jobs_one_running ON key_rotation_jobs (environment_id) WHERE finished_at IS NULL;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['environment_keys','data_keys','integrations','model_keys','key_rotation_jobs']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR ALL TO portcullis_app
                          USING (environment_id = (SELECT portcullis.environment_id()))
                          WITH CHECK (environment_id = (SELECT portcullis.environment_id()))', t || '_tenant', t);
    END LOOP;
END $$;

-- The scheduler and `portcullis keys status` run as the owner role and must find which
-- environments have keys to rotate or jobs to resume: key metadata only, never content.
-- CURRENT_USER is the role running migrations, i.e. the schema owner.
CREATE POLICY environment_keys_operator ON environment_keys FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY key_rotation_jobs_operator ON key_rotation_jobs FOR SELECT TO CURRENT_USER USING (true);

-- Secrets are reachable only by callers holding the permission (R8 at the database layer).
CREATE POLICY integrations_permission ON integrations AS RESTRICTIVE FOR ALL TO portcullis_app
    USING ((SELECT portcullis.has_permission('integrations.read')) OR (SELECT portcullis.has_permission('integrations.manage')))
    WITH CHECK ((SELECT portcullis.has_permission('integrations.manage')));
CREATE POLICY model_keys_permission ON model_keys AS RESTRICTIVE FOR ALL TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')) OR (SELECT portcullis.has_permission('integrations.manage')))
    WITH CHECK ((SELECT portcullis.has_permission('keys.manage')) OR (SELECT portcullis.has_permission('integrations.manage')));

GRANT SELECT, INSERT, UPDATE, DELETE ON environment_keys, data_keys, integrations, model_keys, key_rotation_jobs TO portcullis_app;
