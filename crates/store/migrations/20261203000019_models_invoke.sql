-- `models.invoke` (issue 14, controls M1, M2): calling models through the gateway. A caller
-- holding it may read the environment's sealed model key (the gateway opens it for the
-- upstream call; no route returns it), without being able to manage keys.

CREATE OR REPLACE FUNCTION portcullis.known_permissions() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT ARRAY['environment.read','environment.manage','environment.delete','ownership.transfer',
                       'members.read','members.manage','roles.manage','tokens.manage','audit.read',
                       'projects.read','projects.manage','documents.read','documents.write',
                       'documents.delete','approvals.decide','keys.manage','integrations.read',
                       'integrations.manage','models.invoke'] $$;

DROP POLICY model_keys_permission_read ON model_keys;
CREATE POLICY model_keys_permission_read ON model_keys AS RESTRICTIVE FOR SELECT TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage'))
           OR (SELECT portcullis.has_permission('integrations.manage'))
           OR (SELECT portcullis.has_permission('models.invoke')));
