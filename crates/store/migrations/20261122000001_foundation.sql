-- Foundation: identities, environments (tenants), memberships, roles, projects, documents,
-- tokens, invitations, sessions and the append-only audit log.
--
-- Runs as the owner role. The runtime role `portcullis_app` is created by the bootstrap step
-- before migrations run; it owns nothing and can bypass nothing.

CREATE SCHEMA portcullis;
GRANT USAGE ON SCHEMA portcullis TO portcullis_app;
GRANT USAGE ON SCHEMA public TO portcullis_app;

-- Request context. Set per transaction with set_config(name, value, true) by TenantTx; when a
-- setting is absent every function returns NULL and every policy comparison is false, so a
-- query without context sees no rows and cannot write (fail closed, control T2).
CREATE FUNCTION portcullis.environment_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('portcullis.environment_id', true), '')::uuid $$;

CREATE FUNCTION portcullis.identity_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('portcullis.identity_id', true), '')::uuid $$;

CREATE FUNCTION portcullis.project_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('portcullis.project_id', true), '')::uuid $$;

-- SHA-256 of the bearer token being authenticated; lets the presenter of a token (and only
-- someone who knows its hash) find the one row it names before any tenant context exists.
CREATE FUNCTION portcullis.token_hash() RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT decode(NULLIF(current_setting('portcullis.token_hash', true), ''), 'hex') $$;

CREATE FUNCTION portcullis.login_email() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('portcullis.login_email', true), '') $$;

-- The caller's effective permissions for this transaction (control R8, database layer).
CREATE FUNCTION portcullis.has_permission(wanted text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT COALESCE(wanted = ANY (string_to_array(NULLIF(current_setting('portcullis.permissions', true), ''), ',')), false) $$;

-- True when the transaction is not narrowed to one project, or `p` is that project.
CREATE FUNCTION portcullis.in_project_scope(p uuid) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT portcullis.project_id() IS NULL OR p = portcullis.project_id() $$;

GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA portcullis TO portcullis_app;

CREATE FUNCTION portcullis.known_permissions() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY['environment.read','environment.manage','environment.delete','ownership.transfer',
                       'members.read','members.manage','roles.manage','tokens.manage','audit.read',
                       'projects.read','projects.manage','documents.read','documents.write',
                       'documents.delete','approvals.decide'] $$;
GRANT EXECUTE ON FUNCTION portcullis.known_permissions() TO portcullis_app;

------------------------------------------------------------------------------------------
-- Global tables: not owned by a tenant, still behind RLS.

CREATE TABLE installation (
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    setup_token_hash    bytea CHECK (length(setup_token_hash) = 32),
    setup_completed_at  timestamptz
);
INSERT INTO installation DEFAULT VALUES;

CREATE TABLE identities (
    identity_id          uuid PRIMARY KEY,
    email                text NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    display_name         text NOT NULL CHECK (length(display_name) <= 200),
    password_hash        text NOT NULL,
    failed_logins        integer NOT NULL DEFAULT 0,
    locked_until         timestamptz,
    password_changed_at  timestamptz NOT NULL,
    created_at           timestamptz NOT NULL
);
CREATE UNIQUE INDEX identities_email_key ON identities (email);

CREATE TABLE sessions (
    session_id    uuid PRIMARY KEY,
    identity_id   uuid NOT NULL REFERENCES identities ON DELETE CASCADE,
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    revoked_at    timestamptz,
    user_agent    text,
    ip            text
);
CREATE INDEX sessions_identity ON sessions (identity_id);

------------------------------------------------------------------------------------------
-- Tenant tables. Every primary key starts with environment_id (T1, and Citus-ready).

CREATE TABLE environments (
    environment_id  uuid PRIMARY KEY,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    region          text NOT NULL CHECK (region ~ '^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$'),
    created_by      uuid NOT NULL REFERENCES identities,
    created_at      timestamptz NOT NULL
);

CREATE TABLE custom_roles (
    environment_id  uuid NOT NULL REFERENCES environments ON DELETE CASCADE,
    role_id         uuid NOT NULL,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    permissions     text[] NOT NULL CHECK (permissions <@ portcullis.known_permissions()),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (environment_id, role_id),
    UNIQUE (environment_id, name)
);

CREATE TABLE memberships (
    environment_id  uuid NOT NULL REFERENCES environments ON DELETE CASCADE,
    identity_id     uuid NOT NULL REFERENCES identities ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('owner','admin','contributor','reviewer','viewer','auditor','guest','custom')),
    custom_role_id  uuid,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (environment_id, identity_id),
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL)),
    FOREIGN KEY (environment_id, custom_role_id) REFERENCES custom_roles (environment_id, role_id)
);
-- At most one owner per environment ...
CREATE UNIQUE INDEX memberships_one_owner ON memberships (environment_id) WHERE role = 'owner';
CREATE INDEX memberships_identity ON memberships (identity_id);
CREATE INDEX memberships_custom_role ON memberships (environment_id, custom_role_id) WHERE custom_role_id IS NOT NULL;

-- ... and at least one, checked at commit so an ownership transfer can demote then promote.
CREATE FUNCTION portcullis.require_owner() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM environments e WHERE e.environment_id = OLD.environment_id)
       AND NOT EXISTS (SELECT 1 FROM memberships m
                       WHERE m.environment_id = OLD.environment_id AND m.role = 'owner') THEN
        RAISE EXCEPTION 'environment % must have exactly one owner', OLD.environment_id
            USING ERRCODE = '23514', CONSTRAINT = 'memberships_exactly_one_owner';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER memberships_exactly_one_owner
    AFTER UPDATE OR DELETE ON memberships
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION portcullis.require_owner();

CREATE FUNCTION portcullis.require_owner_on_create() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM environments e WHERE e.environment_id = NEW.environment_id)
       AND NOT EXISTS (SELECT 1 FROM memberships m
                       WHERE m.environment_id = NEW.environment_id AND m.role = 'owner') THEN
        RAISE EXCEPTION 'environment % must have exactly one owner', NEW.environment_id
            USING ERRCODE = '23514', CONSTRAINT = 'environments_exactly_one_owner';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER environments_exactly_one_owner
    AFTER INSERT ON environments
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION portcullis.require_owner_on_create();

CREATE TABLE projects (
    environment_id  uuid NOT NULL REFERENCES environments ON DELETE CASCADE,
    project_id      uuid NOT NULL,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_by      uuid NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (environment_id, project_id),
    UNIQUE (environment_id, name)
);

CREATE TABLE project_grants (
    environment_id  uuid NOT NULL,
    project_id      uuid NOT NULL,
    identity_id     uuid NOT NULL,
    role            text NOT NULL CHECK (role IN ('contributor','reviewer','viewer','custom')),
    custom_role_id  uuid,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (environment_id, project_id, identity_id),
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL)),
    FOREIGN KEY (environment_id, project_id) REFERENCES projects (environment_id, project_id) ON DELETE CASCADE,
    FOREIGN KEY (environment_id, identity_id) REFERENCES memberships (environment_id, identity_id) ON DELETE CASCADE,
    FOREIGN KEY (environment_id, custom_role_id) REFERENCES custom_roles (environment_id, role_id)
);
CREATE INDEX project_grants_identity ON project_grants (environment_id, identity_id);
CREATE INDEX project_grants_custom_role ON project_grants (environment_id, custom_role_id) WHERE custom_role_id IS NOT NULL;

CREATE TABLE documents (
    environment_id  uuid NOT NULL,
    document_id     uuid NOT NULL,
    project_id      uuid NOT NULL,
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    body            text NOT NULL CHECK (length(body) <= 1048576),
    version         integer NOT NULL DEFAULT 1,
    created_by      uuid NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (environment_id, document_id),
    FOREIGN KEY (environment_id, project_id) REFERENCES projects (environment_id, project_id) ON DELETE CASCADE
);
CREATE INDEX documents_project ON documents (environment_id, project_id, document_id);

CREATE TABLE api_tokens (
    environment_id  uuid NOT NULL REFERENCES environments ON DELETE CASCADE,
    token_id        uuid NOT NULL,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    token_hash      bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    hint            text NOT NULL,
    role            text NOT NULL CHECK (role IN ('admin','contributor','reviewer','viewer','auditor','guest','custom')),
    custom_role_id  uuid,
    created_by      uuid NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    PRIMARY KEY (environment_id, token_id),
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL)),
    FOREIGN KEY (environment_id, custom_role_id) REFERENCES custom_roles (environment_id, role_id)
);
CREATE INDEX api_tokens_custom_role ON api_tokens (environment_id, custom_role_id) WHERE custom_role_id IS NOT NULL;

CREATE TABLE invitations (
    environment_id  uuid NOT NULL REFERENCES environments ON DELETE CASCADE,
    invitation_id   uuid NOT NULL,
    email           text NOT NULL CHECK (email = lower(email)),
    role            text NOT NULL CHECK (role IN ('admin','contributor','reviewer','viewer','auditor','guest','custom')),
    custom_role_id  uuid,
    token_hash      bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    invited_by      uuid NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    accepted_at     timestamptz,
    accepted_by     uuid,
    revoked_at      timestamptz,
    PRIMARY KEY (environment_id, invitation_id),
    CHECK ((role = 'custom') = (custom_role_id IS NOT NULL)),
    FOREIGN KEY (environment_id, custom_role_id) REFERENCES custom_roles (environment_id, role_id)
);
CREATE INDEX invitations_custom_role ON invitations (environment_id, custom_role_id) WHERE custom_role_id IS NOT NULL;

-- Audit log. Platform-level events (logins, sign-ups) use the nil environment id. No foreign
-- key to environments: entries outlive the environment they describe.
CREATE TABLE audit_log (
    environment_id  uuid NOT NULL,
    -- Gapless per environment: 1, 2, 3, ... (assigned under the lock of audit_heads).
    seq             bigint NOT NULL CHECK (seq >= 1),
    audit_id        uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    actor_type      text NOT NULL CHECK (actor_type IN ('identity','api_token','system','anonymous')),
    actor_id        uuid,
    action          text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    target_type     text NOT NULL,
    target_id       text,
    outcome         text NOT NULL CHECK (outcome IN ('success','failure','denied')),
    before          jsonb,
    after           jsonb,
    request_id      text,
    ip              text,
    user_agent      text,
    -- Tamper evidence (L3): the hash of the previous entry and of this one, over the canonical
    -- encoding defined in crates/audit/FORMAT.md.
    action_version  smallint NOT NULL DEFAULT 1,
    prev_hash       bytea NOT NULL CHECK (length(prev_hash) = 32),
    entry_hash      bytea NOT NULL CHECK (length(entry_hash) = 32),
    PRIMARY KEY (environment_id, seq),
    UNIQUE (environment_id, audit_id)
);
CREATE INDEX audit_log_time ON audit_log (environment_id, occurred_at);

-- The head of each environment's chain and the frontier of its Merkle tree (the O(log n)
-- subtree roots from which the current root is computed). Locked for each append, which is
-- what keeps the sequence gapless and unforked under concurrent writers.
CREATE TABLE audit_heads (
    environment_id  uuid PRIMARY KEY,
    seq             bigint NOT NULL,
    head_hash       bytea NOT NULL CHECK (length(head_hash) = 32),
    frontier        bytea[] NOT NULL
);

-- Signed checkpoints (tree size, root, time), cut by the checkpointer.
CREATE TABLE audit_checkpoints (
    environment_id  uuid NOT NULL,
    tree_size       bigint NOT NULL,
    root_hash       bytea NOT NULL CHECK (length(root_hash) = 32),
    head_hash       bytea NOT NULL CHECK (length(head_hash) = 32),
    issued_at       timestamptz NOT NULL,
    key_id          text NOT NULL,
    signed          text NOT NULL,
    PRIMARY KEY (environment_id, tree_size)
);

-- Public halves of the checkpoint signing keys, published at
-- /.well-known/portcullis/audit-keys.json. Not tenant data.
CREATE TABLE audit_signing_keys (
    key_id        text PRIMARY KEY,
    public_key    bytea NOT NULL CHECK (length(public_key) = 32),
    -- The Ed25519 seed, wrapped by the installation's key-encryption key. Only the schema
    -- owner (the checkpointer) can read it: the runtime role has column grants on the rest.
    wrapped_seed  bytea NOT NULL,
    kek           jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    retired_at    timestamptz
);

CREATE FUNCTION portcullis.refuse_audit_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = '42501';
END $$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION portcullis.refuse_audit_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis.refuse_audit_change();
CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION portcullis.refuse_audit_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis.refuse_audit_change();

------------------------------------------------------------------------------------------
-- Row-level security (T2). ENABLE and FORCE everywhere; policies name portcullis_app only,
-- so the owner role sees nothing either. `(SELECT f())` lets the planner evaluate the context
-- once per statement instead of once per row.

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['installation','identities','sessions','environments','custom_roles',
                             'memberships','projects','project_grants','documents','api_tokens',
                             'invitations','audit_log','audit_heads','audit_checkpoints','audit_signing_keys']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    END LOOP;
END $$;

CREATE POLICY installation_read ON installation FOR SELECT TO portcullis_app USING (true);
CREATE POLICY installation_setup ON installation FOR UPDATE TO portcullis_app
    USING (setup_completed_at IS NULL) WITH CHECK (true);

CREATE POLICY identities_visible ON identities FOR SELECT TO portcullis_app USING (
    identity_id = (SELECT portcullis.identity_id())
    OR email = (SELECT portcullis.login_email())
    OR EXISTS (SELECT 1 FROM memberships m
               WHERE m.identity_id = identities.identity_id
                 AND m.environment_id = (SELECT portcullis.environment_id())));
CREATE POLICY identities_insert ON identities FOR INSERT TO portcullis_app
    WITH CHECK (identity_id = (SELECT portcullis.identity_id()));
CREATE POLICY identities_update ON identities FOR UPDATE TO portcullis_app
    USING (identity_id = (SELECT portcullis.identity_id()) OR email = (SELECT portcullis.login_email()))
    WITH CHECK (identity_id = (SELECT portcullis.identity_id()) OR email = (SELECT portcullis.login_email()));

CREATE POLICY sessions_owner ON sessions FOR ALL TO portcullis_app
    USING (identity_id = (SELECT portcullis.identity_id()) OR token_hash = (SELECT portcullis.token_hash()))
    WITH CHECK (identity_id = (SELECT portcullis.identity_id()));

CREATE POLICY environments_member ON environments FOR SELECT TO portcullis_app USING (
    environment_id = (SELECT portcullis.environment_id())
    OR ((SELECT portcullis.environment_id()) IS NULL
        AND EXISTS (SELECT 1 FROM memberships m
                    WHERE m.environment_id = environments.environment_id
                      AND m.identity_id = (SELECT portcullis.identity_id()))));
CREATE POLICY environments_insert ON environments FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY environments_update ON environments FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('environment.manage')))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY environments_delete ON environments FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('environment.delete')));

CREATE POLICY memberships_tenant ON memberships FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
-- An identity may list its own memberships across environments, outside any tenant context.
CREATE POLICY memberships_own ON memberships FOR SELECT TO portcullis_app
    USING ((SELECT portcullis.environment_id()) IS NULL AND identity_id = (SELECT portcullis.identity_id()));

CREATE POLICY custom_roles_tenant ON custom_roles FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY projects_tenant ON projects FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY project_grants_tenant ON project_grants FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));

-- Customer content: tenant isolation, and (restrictive, so ANDed) the caller's permission on
-- the project in scope (R8 at the database layer).
CREATE POLICY documents_tenant ON documents FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
-- Every function call is wrapped in a scalar subquery so PostgreSQL evaluates it once per
-- statement (an InitPlan), not once per row.
CREATE POLICY documents_read_permission ON documents AS RESTRICTIVE FOR SELECT TO portcullis_app
    USING ((SELECT portcullis.has_permission('documents.read'))
           AND ((SELECT portcullis.project_id()) IS NULL OR project_id = (SELECT portcullis.project_id())));
CREATE POLICY documents_insert_permission ON documents AS RESTRICTIVE FOR INSERT TO portcullis_app
    WITH CHECK ((SELECT portcullis.has_permission('documents.write'))
           AND ((SELECT portcullis.project_id()) IS NULL OR project_id = (SELECT portcullis.project_id())));
CREATE POLICY documents_update_permission ON documents AS RESTRICTIVE FOR UPDATE TO portcullis_app
    USING ((SELECT portcullis.has_permission('documents.write'))
           AND ((SELECT portcullis.project_id()) IS NULL OR project_id = (SELECT portcullis.project_id())))
    WITH CHECK ((SELECT portcullis.has_permission('documents.write'))
           AND ((SELECT portcullis.project_id()) IS NULL OR project_id = (SELECT portcullis.project_id())));
CREATE POLICY documents_delete_permission ON documents AS RESTRICTIVE FOR DELETE TO portcullis_app
    USING ((SELECT portcullis.has_permission('documents.delete'))
           AND ((SELECT portcullis.project_id()) IS NULL OR project_id = (SELECT portcullis.project_id())));

CREATE POLICY api_tokens_tenant ON api_tokens FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY api_tokens_presented ON api_tokens FOR SELECT TO portcullis_app
    USING (token_hash = (SELECT portcullis.token_hash()));

CREATE POLICY invitations_tenant ON invitations FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY invitations_presented ON invitations FOR SELECT TO portcullis_app
    USING (token_hash = (SELECT portcullis.token_hash()));

CREATE POLICY audit_log_append ON audit_log FOR INSERT TO portcullis_app WITH CHECK (
    environment_id = (SELECT portcullis.environment_id())
    OR ((SELECT portcullis.environment_id()) IS NULL
        AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid));
CREATE POLICY audit_log_read ON audit_log FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('audit.read')));

-- The head row is read and advanced by every audited transaction of its scope.
CREATE POLICY audit_heads_scope ON audit_heads FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id())
           OR ((SELECT portcullis.environment_id()) IS NULL
               AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id())
           OR ((SELECT portcullis.environment_id()) IS NULL
               AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid));
CREATE POLICY audit_checkpoints_tenant ON audit_checkpoints FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY audit_signing_keys_public ON audit_signing_keys FOR SELECT TO portcullis_app USING (true);
-- The checkpointer runs as the schema owner to find environments with new entries: heads only.
CREATE POLICY audit_heads_operator ON audit_heads FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY audit_checkpoints_operator ON audit_checkpoints FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY audit_signing_keys_operator ON audit_signing_keys FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true);

------------------------------------------------------------------------------------------
-- Privileges: the runtime role gets exactly what the application uses.

GRANT SELECT, UPDATE ON installation TO portcullis_app;
GRANT SELECT, INSERT, UPDATE ON identities TO portcullis_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, environments, custom_roles, memberships, projects,
    project_grants, documents, api_tokens, invitations TO portcullis_app;
GRANT SELECT, INSERT ON audit_log, audit_checkpoints TO portcullis_app;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO portcullis_app;
GRANT SELECT (key_id, public_key, created_at, retired_at) ON audit_signing_keys TO portcullis_app;
