-- Credential changes are announced to every node (issue: a lean request path). Each node
-- keeps a short-lived cache of sessions, API tokens, memberships and project grants
-- (crates/store/src/auth_cache.rs) and LISTENs on `portcullis_auth`; these triggers NOTIFY
-- it, with the scope to forget, whenever a row that decides who may do what changes or goes:
--   'i:<identity id>'    sessions revoked or deleted, a password changed, an identity deleted;
--   'e:<environment id>' a membership, custom role, API token, project grant or project
--                        changed or deleted, or the environment deleted.
-- Notifications are sent at commit and only then, so a rolled-back change announces nothing.
-- Inserts need no notice (the cache never remembers that something is absent), except for
-- project grants: the cache remembers a project's grant as "none" for a member without one.
-- Updates that only record a last use (sessions.last_seen_at, api_tokens.last_used_at) or
-- login failures are not announced: they change no one's access. Anyone can NOTIFY this
-- channel; the most a forged notice can do is make a node forget and look up again.

CREATE FUNCTION portcullis.announce_credential_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
    AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    IF TG_ARGV[0] = 'identity' THEN
        PERFORM pg_notify('portcullis_auth', 'i:' || r.identity_id::text);
    ELSE
        PERFORM pg_notify('portcullis_auth', 'e:' || r.environment_id::text);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION portcullis.announce_credential_change() FROM PUBLIC;

CREATE TRIGGER sessions_announce AFTER UPDATE OF revoked_at, expires_at, identity_id, token_hash OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION portcullis.announce_credential_change('identity');
CREATE TRIGGER identities_announce AFTER UPDATE OF password_hash, identity_id OR DELETE ON identities
    FOR EACH ROW EXECUTE FUNCTION portcullis.announce_credential_change('identity');
CREATE TRIGGER memberships_announce AFTER UPDATE OR DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION portcullis.announce_credential_change('environment');
CREATE TRIGGER custom_roles_announce AFTER UPDATE OR DELETE ON custom_roles
    FOR EACH ROW EXECUTE FUNCTION portcullis.announce_credential_change('environment');
CREATE TRIGGER api_tokens_announce
    AFTER UPDATE OF revoked_at, expires_at, role, custom_role_id, created_by, token_hash, environment_id OR DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION portcullis.announce_credential_change('environment');
CREATE TRIGGER project_grants_announce AFTER INSERT OR UPDATE OR DELETE ON project_grants
    FOR EACH ROW EXECUTE FUNCTION portcullis.announce_credential_change('environment');
CREATE TRIGGER projects_announce AFTER UPDATE OF project_id, environment_id OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION portcullis.announce_credential_change('environment');
CREATE TRIGGER environments_announce AFTER DELETE ON environments
    FOR EACH ROW EXECUTE FUNCTION portcullis.announce_credential_change('environment');
