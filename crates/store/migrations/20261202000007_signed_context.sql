-- The database as a boundary against SQL run as the runtime role (T2, R8, L2, E3).
--
-- Until now the request context was a set of plain settings, which anyone able to run SQL as
-- portcullis_app could set to another tenant's values. From here on the context is one value
-- the application signs per transaction with a key the runtime role cannot read:
--
--   portcullis_guard.enter(payload, signature)  checks the signature (HMAC-SHA-256) and the
--       expiry, then binds the payload to this backend and this transaction with a seal (an
--       HMAC of pid, transaction start and payload under the same key);
--   portcullis_guard.context()  re-checks the seal and returns the payload's fields, or NULL.
--
-- Both are SECURITY DEFINER functions owned by portcullis_guard, a NOLOGIN role that holds
-- nothing but the key. Every accessor the policies call (portcullis.environment_id() and the
-- rest) reads the verified context, so a setting written by hand, edited, or copied from
-- another transaction reads as "no context" and every policy fails closed.
--
-- Payload: fields separated by '|', in this order (empty when absent):
--    1 version 'v1'        6 actor id           11 login email index (hex)
--    2 purpose             7 data subject       12 login email (hex of UTF-8; legacy rows)
--    3 environment id      8 permissions (a,b)  13 invitation id
--    4 identity id         9 project id         14 expiry (Unix seconds)
--    5 actor type         10 token hash (hex)
-- The encoder is crates/store/src/context.rs; the purposes are listed there.

CREATE SCHEMA portcullis_guard;
REVOKE ALL ON SCHEMA portcullis_guard FROM PUBLIC;
GRANT USAGE ON SCHEMA portcullis_guard TO portcullis_app, portcullis_guard;

-- The context key, as the two HMAC pads (key XOR ipad, key XOR opad, 64 bytes each) that
-- sha256() needs, and the key itself for the application, which reads it through the owner
-- connection at boot. Only portcullis_guard may read the pads; only the owner the key.
CREATE TABLE portcullis_guard.context_key (
    key_id      smallint PRIMARY KEY CHECK (key_id = 1),
    secret      bytea NOT NULL CHECK (length(secret) = 32),
    inner_pad   bytea NOT NULL CHECK (length(inner_pad) = 64),
    outer_pad   bytea NOT NULL CHECK (length(outer_pad) = 64),
    created_at  timestamptz NOT NULL
);
REVOKE ALL ON portcullis_guard.context_key FROM PUBLIC;
GRANT SELECT (key_id, inner_pad, outer_pad) ON portcullis_guard.context_key TO portcullis_guard;

-- HMAC-SHA-256 (RFC 2104) is sha256(outer_pad || sha256(inner_pad || message)). Both checks
-- are written out inside the two functions (no helper function call: a non-inlined SQL
-- function would be planned again in every statement that reaches a policy). The seal covers
-- this backend and this transaction's start besides the payload, so a sealed context copied
-- into another transaction (or another connection) no longer verifies.

CREATE FUNCTION portcullis_guard.enter(payload text, signature bytea) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    ipad bytea;
    opad bytea;
    fields text[];
BEGIN
    SELECT k.inner_pad, k.outer_pad INTO ipad, opad FROM portcullis_guard.context_key k WHERE k.key_id = 1;
    IF ipad IS NULL THEN
        RAISE EXCEPTION 'portcullis: no context key is installed' USING ERRCODE = '42501';
    END IF;
    -- Compared through a second hash, so the time taken says nothing about how many bytes of
    -- a guessed signature were right.
    IF payload IS NULL OR signature IS NULL
       OR sha256(sha256(opad || sha256(ipad || convert_to('ctx|' || payload, 'UTF8'))))
          IS DISTINCT FROM sha256(signature) THEN
        RAISE EXCEPTION 'portcullis: context signature refused' USING ERRCODE = '42501';
    END IF;
    fields := string_to_array(payload, '|');
    IF fields[1] IS DISTINCT FROM 'v1' OR array_length(fields, 1) <> 14
       OR fields[14] !~ '^[0-9]{1,12}$'
       OR fields[14]::bigint < extract(epoch FROM clock_timestamp()) THEN
        RAISE EXCEPTION 'portcullis: context expired or malformed' USING ERRCODE = '42501';
    END IF;
    PERFORM set_config('portcullis.context', payload, true),
            set_config('portcullis.context_seal',
                       encode(sha256(opad || sha256(ipad || convert_to(
                           'seal|' || pg_backend_pid() || '|'
                           || (extract(epoch FROM transaction_timestamp()) * 1000000)::bigint
                           || '|' || payload, 'UTF8'))), 'hex'),
                       true);
END $$;

CREATE FUNCTION portcullis_guard.context() RETURNS text[]
    LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    payload text := current_setting('portcullis.context', true);
    seal text := current_setting('portcullis.context_seal', true);
    ipad bytea;
    opad bytea;
BEGIN
    IF payload IS NULL OR payload = '' OR seal IS NULL OR length(seal) <> 64 OR seal !~ '^[0-9a-f]+$' THEN
        RETURN NULL;
    END IF;
    SELECT k.inner_pad, k.outer_pad INTO ipad, opad FROM portcullis_guard.context_key k WHERE k.key_id = 1;
    IF sha256(sha256(opad || sha256(ipad || convert_to(
           'seal|' || pg_backend_pid() || '|'
           || (extract(epoch FROM transaction_timestamp()) * 1000000)::bigint
           || '|' || payload, 'UTF8'))))
       IS DISTINCT FROM sha256(decode(seal, 'hex')) THEN
        RETURN NULL;
    END IF;
    RETURN string_to_array(payload, '|');
END $$;

-- The definer functions run as portcullis_guard: it must own them (and may then lose CREATE).
GRANT CREATE ON SCHEMA portcullis_guard TO portcullis_guard;
ALTER FUNCTION portcullis_guard.enter(text, bytea) OWNER TO portcullis_guard;
ALTER FUNCTION portcullis_guard.context() OWNER TO portcullis_guard;
REVOKE CREATE ON SCHEMA portcullis_guard FROM portcullis_guard;
REVOKE ALL ON FUNCTION portcullis_guard.enter(text, bytea), portcullis_guard.context() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION portcullis_guard.enter(text, bytea), portcullis_guard.context() TO portcullis_app;

------------------------------------------------------------------------------------------
-- The accessors the policies call, now views of the verified context. Same names and
-- signatures as before, so the policies that only compare environments keep working. They are
-- plain SQL without a SET clause so that PostgreSQL inlines them into each policy's InitPlan
-- (one call of portcullis_guard.context() per use, no function planning per statement); their
-- bodies name nothing a caller's search_path could redirect (the runtime role can create no
-- object anywhere), and T7 checks that each body is exactly this one.

CREATE OR REPLACE FUNCTION portcullis.environment_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT NULLIF((portcullis_guard.context())[3], '')::pg_catalog.uuid $$;

CREATE OR REPLACE FUNCTION portcullis.identity_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT NULLIF((portcullis_guard.context())[4], '')::pg_catalog.uuid $$;

CREATE OR REPLACE FUNCTION portcullis.project_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT NULLIF((portcullis_guard.context())[9], '')::pg_catalog.uuid $$;

CREATE OR REPLACE FUNCTION portcullis.token_hash() RETURNS bytea
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT pg_catalog.decode(NULLIF((portcullis_guard.context())[10], ''), 'hex') $$;

CREATE OR REPLACE FUNCTION portcullis.login_email_index() RETURNS bytea
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT pg_catalog.decode(NULLIF((portcullis_guard.context())[11], ''), 'hex') $$;

CREATE OR REPLACE FUNCTION portcullis.login_email() RETURNS text
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT pg_catalog.convert_from(pg_catalog.decode(NULLIF((portcullis_guard.context())[12], ''), 'hex'), 'UTF8') $$;

CREATE OR REPLACE FUNCTION portcullis.has_permission(wanted text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT COALESCE(wanted = ANY (pg_catalog.string_to_array(NULLIF((portcullis_guard.context())[8], ''), ',')), false) $$;

CREATE OR REPLACE FUNCTION portcullis.in_project_scope(p uuid) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, portcullis, pg_temp
    AS $$ SELECT portcullis.project_id() IS NULL OR p = portcullis.project_id() $$;

CREATE FUNCTION portcullis.purpose() RETURNS text
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT NULLIF((portcullis_guard.context())[2], '') $$;

CREATE FUNCTION portcullis.actor_type() RETURNS text
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT NULLIF((portcullis_guard.context())[5], '') $$;

CREATE FUNCTION portcullis.actor_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT NULLIF((portcullis_guard.context())[6], '')::pg_catalog.uuid $$;

-- The person whose personal data this transaction's metadata is (the identity acting, or the
-- creator of the API token acting): the only subject it may create an audit subject key for.
CREATE FUNCTION portcullis.subject_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT NULLIF((portcullis_guard.context())[7], '')::pg_catalog.uuid $$;

CREATE FUNCTION portcullis.invitation_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    AS $$ SELECT NULLIF((portcullis_guard.context())[13], '')::pg_catalog.uuid $$;

GRANT EXECUTE ON FUNCTION portcullis.purpose(), portcullis.actor_type(), portcullis.actor_id(),
    portcullis.subject_id(), portcullis.invitation_id() TO portcullis_app;

-- Fixed search_path for the functions written before this migration.
ALTER FUNCTION portcullis.known_permissions() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION portcullis.require_owner() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION portcullis.require_owner_on_create() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION portcullis.refuse_audit_change() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION portcullis.subject_key_identity_fixed() SET search_path = pg_catalog, pg_temp;

-- No temporary objects for the runtime role: nothing can shadow a table, in a query or in a
-- trigger, and no query of the application needs one.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, portcullis_app', current_database());
END $$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- The platform audit scope is the nil id: no environment may take it.
ALTER TABLE environments ADD CONSTRAINT environments_not_platform_scope
    CHECK (environment_id <> '00000000-0000-0000-0000-000000000000'::uuid);

------------------------------------------------------------------------------------------
-- Policies that must know more than the environment: who may create credentials,
-- memberships and environments, and which permission each write needs (R8 at the database).

-- Setup: only a transaction signed for it may set or spend the setup token.
DROP POLICY installation_setup ON installation;
CREATE POLICY installation_setup ON installation FOR UPDATE TO portcullis_app
    USING (setup_completed_at IS NULL AND (SELECT portcullis.purpose()) = 'setup')
    WITH CHECK ((SELECT portcullis.purpose()) = 'setup');

-- An identity is created only by sign-up (or setup) signed for exactly that identity.
DROP POLICY identities_insert ON identities;
CREATE POLICY identities_insert ON identities FOR INSERT TO portcullis_app
    WITH CHECK ((SELECT portcullis.purpose()) = 'signup' AND identity_id = (SELECT portcullis.identity_id()));

-- Sessions: read and revoke one's own, find one by the presented token's hash; create one only
-- right after the application verified that identity's password (purpose session_create).
DROP POLICY sessions_owner ON sessions;
CREATE POLICY sessions_read ON sessions FOR SELECT TO portcullis_app
    USING (identity_id = (SELECT portcullis.identity_id()) OR token_hash = (SELECT portcullis.token_hash()));
CREATE POLICY sessions_create ON sessions FOR INSERT TO portcullis_app
    WITH CHECK ((SELECT portcullis.purpose()) = 'session_create' AND identity_id = (SELECT portcullis.identity_id()));
CREATE POLICY sessions_update ON sessions FOR UPDATE TO portcullis_app
    USING (identity_id = (SELECT portcullis.identity_id()) OR token_hash = (SELECT portcullis.token_hash()))
    WITH CHECK (identity_id = (SELECT portcullis.identity_id()) OR token_hash = (SELECT portcullis.token_hash()));
REVOKE UPDATE, DELETE ON sessions FROM portcullis_app;
GRANT UPDATE (last_seen_at, revoked_at, ip, user_agent) ON sessions TO portcullis_app;

-- Environments are created only in a transaction signed for creating that one, by its creator.
DROP POLICY environments_insert ON environments;
CREATE POLICY environments_insert ON environments FOR INSERT TO portcullis_app
    WITH CHECK ((SELECT portcullis.purpose()) = 'environment_create'
                AND environment_id = (SELECT portcullis.environment_id())
                AND created_by = (SELECT portcullis.identity_id()));

-- Memberships: readable inside the environment; created only as the creator's owner seat of
-- a new environment or by accepting that very invitation with its role; changed with
-- members.manage (never the owner seat) or ownership.transfer; removed with members.manage.
DROP POLICY memberships_tenant ON memberships;
CREATE POLICY memberships_read ON memberships FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY memberships_create ON memberships FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id())
                AND identity_id = (SELECT portcullis.identity_id())
                AND (((SELECT portcullis.purpose()) = 'environment_create' AND role = 'owner')
                     OR ((SELECT portcullis.purpose()) = 'invitation_accept'
                         AND EXISTS (SELECT 1 FROM invitations i
                                      WHERE i.environment_id = memberships.environment_id
                                        AND i.invitation_id = (SELECT portcullis.invitation_id())
                                        AND i.role = memberships.role
                                        AND i.custom_role_id IS NOT DISTINCT FROM memberships.custom_role_id
                                        AND i.revoked_at IS NULL
                                        AND i.expires_at > now()))));
CREATE POLICY memberships_change ON memberships FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id())
           AND ((SELECT portcullis.has_permission('ownership.transfer'))
                OR ((SELECT portcullis.has_permission('members.manage')) AND role <> 'owner')))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id())
                AND ((SELECT portcullis.has_permission('ownership.transfer'))
                     OR ((SELECT portcullis.has_permission('members.manage')) AND role <> 'owner')));
CREATE POLICY memberships_remove ON memberships FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id())
           AND role <> 'owner' AND (SELECT portcullis.has_permission('members.manage')));

-- Custom roles, projects and project grants: readable inside the environment, written with
-- the permission the application checks.
DROP POLICY custom_roles_tenant ON custom_roles;
CREATE POLICY custom_roles_read ON custom_roles FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY custom_roles_write ON custom_roles FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('roles.manage')))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('roles.manage')));

DROP POLICY projects_tenant ON projects;
CREATE POLICY projects_read ON projects FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY projects_write ON projects FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')));

DROP POLICY project_grants_tenant ON project_grants;
CREATE POLICY project_grants_read ON project_grants FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY project_grants_write ON project_grants FOR ALL TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')));
-- Deleting an environment removes its grants first (see queries::environments::delete).
CREATE POLICY project_grants_environment_delete ON project_grants FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('environment.delete')));

-- API tokens: created and revoked with tokens.manage; a token may record its own last use.
-- No other column of a token can change, and tokens are never deleted by the application.
DROP POLICY api_tokens_tenant ON api_tokens;
CREATE POLICY api_tokens_read ON api_tokens FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY api_tokens_create ON api_tokens FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('tokens.manage')));
CREATE POLICY api_tokens_update ON api_tokens FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id())
           AND ((SELECT portcullis.has_permission('tokens.manage'))
                OR ((SELECT portcullis.actor_type()) = 'api_token' AND token_id = (SELECT portcullis.actor_id()))))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
REVOKE UPDATE, DELETE ON api_tokens FROM portcullis_app;
GRANT UPDATE (last_used_at, revoked_at) ON api_tokens TO portcullis_app;

-- Invitations: created and revoked with members.manage; accepted only in a transaction signed
-- for accepting that invitation. Never deleted by the application.
DROP POLICY invitations_tenant ON invitations;
CREATE POLICY invitations_read ON invitations FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY invitations_create ON invitations FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('members.manage')));
CREATE POLICY invitations_update ON invitations FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id())
           AND ((SELECT portcullis.has_permission('members.manage'))
                OR ((SELECT portcullis.purpose()) = 'invitation_accept'
                    AND invitation_id = (SELECT portcullis.invitation_id()))))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id())
                AND ((SELECT portcullis.has_permission('members.manage'))
                     OR accepted_by = (SELECT portcullis.identity_id())));
REVOKE UPDATE, DELETE ON invitations FROM portcullis_app;
-- (and the sealed email, re-sealed under a new PII key by `portcullis keys rotate-pii`)
GRANT UPDATE (accepted_at, accepted_by, revoked_at, email_ciphertext, pii_key_version) ON invitations TO portcullis_app;

-- Audit entries name the signed actor (L2): no entry in anyone else's name.
DROP POLICY audit_log_append ON audit_log;
CREATE POLICY audit_log_append ON audit_log FOR INSERT TO portcullis_app WITH CHECK (
    (environment_id = (SELECT portcullis.environment_id())
     OR ((SELECT portcullis.environment_id()) IS NULL
         AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid))
    AND actor_type = COALESCE((SELECT portcullis.actor_type()), 'anonymous')
    AND actor_id IS NOT DISTINCT FROM (SELECT portcullis.actor_id()));

-- Checkpoints and their anchoring records are written by the checkpointer (a system context),
-- never by a request.
DROP POLICY audit_checkpoints_tenant ON audit_checkpoints;
CREATE POLICY audit_checkpoints_read ON audit_checkpoints FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY audit_checkpoints_cut ON audit_checkpoints FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.purpose()) = 'system');
DROP POLICY audit_checkpoint_anchors_tenant ON audit_checkpoint_anchors;
CREATE POLICY audit_checkpoint_anchors_read ON audit_checkpoint_anchors FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY audit_checkpoint_anchors_record ON audit_checkpoint_anchors FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.purpose()) = 'system');

-- Audit subject keys (D3) are created for the transaction's own data subject only. In the
-- platform scope, where every account has one, a request sees only its own (the ids would
-- enumerate every account); system work sees them all.
CREATE POLICY subject_keys_own_subject ON subject_keys AS RESTRICTIVE FOR INSERT TO portcullis_app
    WITH CHECK (subject_id = (SELECT portcullis.subject_id()));
CREATE POLICY subject_keys_platform_own ON subject_keys AS RESTRICTIVE FOR SELECT TO portcullis_app
    USING (environment_id <> '00000000-0000-0000-0000-000000000000'::uuid
           OR subject_id = (SELECT portcullis.subject_id())
           OR (SELECT portcullis.purpose()) = 'system');

-- Keyrings (E4): any writer of sealed data may create the first version lazily; changing a
-- keyring (rotation, re-encryption, KEK switch) needs keys.manage.
CREATE POLICY environment_keys_manage ON environment_keys AS RESTRICTIVE FOR UPDATE TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')));
CREATE POLICY environment_keys_remove ON environment_keys AS RESTRICTIVE FOR DELETE TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')));
CREATE POLICY environment_keys_first ON environment_keys AS RESTRICTIVE FOR INSERT TO portcullis_app
    WITH CHECK (active_version = 1 OR (SELECT portcullis.has_permission('keys.manage')));
CREATE POLICY data_keys_manage ON data_keys AS RESTRICTIVE FOR UPDATE TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')));
CREATE POLICY data_keys_remove ON data_keys AS RESTRICTIVE FOR DELETE TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')));
CREATE POLICY data_keys_first ON data_keys AS RESTRICTIVE FOR INSERT TO portcullis_app
    WITH CHECK (version = 1 OR (SELECT portcullis.has_permission('keys.manage')));
CREATE POLICY key_rotation_jobs_manage ON key_rotation_jobs AS RESTRICTIVE FOR ALL TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')))
    WITH CHECK ((SELECT portcullis.has_permission('keys.manage')));
