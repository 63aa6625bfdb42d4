-- Operator tokens, and the platform audit scope over HTTP (issue 12, item 4).
--
-- The platform scope (environment id nil: setup, sign-ups, sign-ins, refused account
-- requests) was readable only through the operator's CLI, as a system context. From here on an
-- operator token lets the operator read it over HTTP too (GET /v1/platform/audit):
--
--   operator_tokens  one row per token; only the token's SHA-256 is stored (E3). Created and
--                    revoked by the schema owner alone (`portcullis operator token create |
--                    revoke`, which run over the owner's connection): a serving node holds no
--                    owner connection, so nothing that serves requests can mint or revive one.
--                    Never deleted. The runtime role sees a row only under an operator context
--                    that carries that row's hash, and may record its last use.
--   operator_read    the purpose of an operator's request. Under it, and only while the token
--                    the context names (its hash, and its id as the actor) is neither revoked
--                    nor expired, the platform scope's entries and the subject keys that open
--                    their request metadata are readable: the database checks the token again
--                    on every read, whatever the application decided.
--
-- No other request context reads the platform scope any more: audit_log_read leaves it to
-- system work (the CLI, verification, checkpoints, reports), besides a person's own entries
-- (audit_log_own_platform, migration 0014).

CREATE TABLE operator_tokens (
    token_id     uuid PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    hint         text NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz CHECK (expires_at IS NULL OR expires_at > created_at),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
ALTER TABLE operator_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE operator_tokens FORCE ROW LEVEL SECURITY;

-- The owner (CURRENT_USER runs migrations) lists, creates and revokes; there is no DELETE
-- policy, so not even the owner deletes a token through the application's roles.
CREATE POLICY operator_tokens_operator ON operator_tokens FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY operator_tokens_operator_insert ON operator_tokens FOR INSERT TO CURRENT_USER
    WITH CHECK (revoked_at IS NULL AND last_used_at IS NULL);
CREATE POLICY operator_tokens_operator_revoke ON operator_tokens FOR UPDATE TO CURRENT_USER
    USING (true) WITH CHECK (revoked_at IS NOT NULL);

-- The runtime role: the presented token's row, under an operator context only; its last use.
GRANT SELECT (token_id, token_hash, expires_at, revoked_at, last_used_at) ON operator_tokens TO portcullis_app;
GRANT UPDATE (last_used_at) ON operator_tokens TO portcullis_app;
CREATE POLICY operator_tokens_presented ON operator_tokens FOR SELECT TO portcullis_app
    USING ((SELECT portcullis.purpose()) = 'operator_read'
           AND token_hash = (SELECT portcullis.token_hash()));
CREATE POLICY operator_tokens_used ON operator_tokens FOR UPDATE TO portcullis_app
    USING ((SELECT portcullis.purpose()) = 'operator_read'
           AND (SELECT portcullis.actor_type()) = 'operator_token'
           AND token_hash = (SELECT portcullis.token_hash())
           AND token_id = (SELECT portcullis.actor_id())
           AND revoked_at IS NULL)
    WITH CHECK (token_hash = (SELECT portcullis.token_hash())
                AND token_id = (SELECT portcullis.actor_id()));

------------------------------------------------------------------------------------------
-- The platform scope: system work and the live operator token only.

DROP POLICY audit_log_read ON audit_log;
CREATE POLICY audit_log_read ON audit_log FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id())
           AND (SELECT portcullis.has_permission('audit.read'))
           AND (environment_id <> '00000000-0000-0000-0000-000000000000'::uuid
                OR (SELECT portcullis.purpose()) = 'system'));

CREATE POLICY audit_log_operator_read ON audit_log FOR SELECT TO portcullis_app
    USING (environment_id = '00000000-0000-0000-0000-000000000000'::uuid
           AND (SELECT portcullis.purpose()) = 'operator_read'
           AND (SELECT portcullis.actor_type()) = 'operator_token'
           AND (SELECT portcullis.has_permission('audit.read'))
           AND EXISTS (SELECT 1 FROM operator_tokens t
                        WHERE t.token_hash = (SELECT portcullis.token_hash())
                          AND t.token_id = (SELECT portcullis.actor_id())
                          AND t.revoked_at IS NULL
                          AND (t.expires_at IS NULL OR t.expires_at > now())));

-- The subject keys that open the platform entries' request metadata: one's own, system
-- work's, and now the live operator token's.
DROP POLICY subject_keys_platform_own ON subject_keys;
CREATE POLICY subject_keys_platform_own ON subject_keys AS RESTRICTIVE FOR SELECT TO portcullis_app
    USING (environment_id <> '00000000-0000-0000-0000-000000000000'::uuid
           OR subject_id = (SELECT portcullis.subject_id())
           OR (SELECT portcullis.purpose()) = 'system'
           OR ((SELECT portcullis.purpose()) = 'operator_read'
               AND (SELECT portcullis.actor_type()) = 'operator_token'
               AND EXISTS (SELECT 1 FROM operator_tokens t
                            WHERE t.token_hash = (SELECT portcullis.token_hash())
                              AND t.token_id = (SELECT portcullis.actor_id())
                              AND t.revoked_at IS NULL
                              AND (t.expires_at IS NULL OR t.expires_at > now()))));

------------------------------------------------------------------------------------------
-- The operator token as an audit actor: its reads (audit.read) and refusals are recorded in
-- the platform scope under its id. Expand only: every earlier actor type stays valid.

ALTER TABLE audit_pending DROP CONSTRAINT audit_pending_actor_type_check;
ALTER TABLE audit_pending ADD CONSTRAINT audit_pending_actor_type_check
    CHECK (actor_type IN ('identity', 'api_token', 'system', 'anonymous', 'operator_token'));
ALTER TABLE audit_log DROP CONSTRAINT audit_log_actor_type_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_actor_type_check
    CHECK (actor_type IN ('identity', 'api_token', 'system', 'anonymous', 'operator_token')) NOT VALID;
ALTER TABLE audit_log VALIDATE CONSTRAINT audit_log_actor_type_check;

-- Creating and revoking a token is audited in the owner's own transaction, so the token and
-- its entry commit together: the owner submits exactly these two platform entries, as system.
CREATE POLICY audit_pending_operator_submit ON audit_pending FOR INSERT TO CURRENT_USER
    WITH CHECK (environment_id = '00000000-0000-0000-0000-000000000000'::uuid
                AND actor_type = 'system' AND actor_id IS NULL
                AND action IN ('operator_token.created', 'operator_token.revoked'));
