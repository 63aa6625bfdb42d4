-- Row-level security policies by command (issue 10, section 1; controls T1, T2, R8).
--
-- A FOR ALL policy applies to SELECT too: PostgreSQL ORs a permissive FOR ALL policy into
-- every read of its table, and each of its subqueries is an InitPlan that verifies the signed
-- context once more (portcullis_guard.context(), an HMAC). The write policies of custom roles,
-- projects and grants were such policies, so every membership lookup and project entry paid
-- for permission checks that only a write needs. Here every FOR ALL policy of the runtime role
-- (and the schema owner's on platform_keys) becomes one policy per command it serves, with the
-- same expressions, so a SELECT evaluates only the SELECT policies.
--
-- Why each command may see and write exactly what it could before. For one command,
-- PostgreSQL ORs the USING (or WITH CHECK) expressions of the permissive policies for that
-- command or ALL, and ANDs those of the restrictive ones. A FOR ALL policy replaced by
-- per-command policies with its own expressions therefore leaves INSERT, UPDATE and DELETE
-- with the same terms. For SELECT:
--   * a permissive FOR ALL policy whose USING implies that of a SELECT policy already there
--     (x AND y next to x) adds nothing to reads: it gets no SELECT part;
--   * a permissive FOR ALL policy that was the table's only permissive read policy keeps its
--     USING as a SELECT policy;
--   * a restrictive FOR ALL policy narrows reads: its USING stays, as a restrictive SELECT policy.
-- Where the runtime role holds no privilege for a command, that command's part is left out:
-- the privilege check refuses the statement before any policy is looked at.
-- The SELECT policies are also what UPDATE, DELETE and INSERT ... RETURNING apply to the rows
-- they read or return, and SELECT ... FOR UPDATE applies the UPDATE policies on top: with the
-- terms of every command unchanged, so are these.
-- The migration runs in one transaction: no moment exists with a table's policy half replaced.
--
-- Left for the audit tables' own migration: audit_heads_scope (runtime) and
-- audit_signing_keys_operator (owner) are FOR ALL still.

------------------------------------------------------------------------------------------
-- custom_roles, projects, project_grants: read inside the environment (*_read, unchanged);
-- written with roles.manage / projects.manage. The write policy's USING is
-- "environment AND permission", which implies the read policy's "environment": no SELECT part.
-- project_grants_environment_delete stays as it is (DELETE, ORed with project_grants_delete
-- as it was with project_grants_write).

DROP POLICY custom_roles_write ON custom_roles;
CREATE POLICY custom_roles_create ON custom_roles FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('roles.manage')));
CREATE POLICY custom_roles_update ON custom_roles FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('roles.manage')))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('roles.manage')));
CREATE POLICY custom_roles_delete ON custom_roles FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('roles.manage')));

DROP POLICY projects_write ON projects;
CREATE POLICY projects_create ON projects FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')));
CREATE POLICY projects_update ON projects FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')));
CREATE POLICY projects_delete ON projects FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')));

DROP POLICY project_grants_write ON project_grants;
CREATE POLICY project_grants_create ON project_grants FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')));
CREATE POLICY project_grants_update ON project_grants FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')));
CREATE POLICY project_grants_delete ON project_grants FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission('projects.manage')));

------------------------------------------------------------------------------------------
-- documents: documents_tenant was the only permissive policy, so each command keeps its
-- environment term (SELECT included). The restrictive documents_*_permission policies are
-- per command already. Their project term "p IS NULL OR project_id = p" is written
-- "project_id = COALESCE(p, project_id)": the same for a NOT NULL column (p NULL: true;
-- otherwise project_id = p), with one context lookup instead of two.

DROP POLICY documents_tenant ON documents;
CREATE POLICY documents_tenant_read ON documents FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY documents_tenant_insert ON documents FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY documents_tenant_update ON documents FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY documents_tenant_delete ON documents FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));

ALTER POLICY documents_read_permission ON documents
    USING ((SELECT portcullis.has_permission('documents.read'))
           AND project_id = COALESCE((SELECT portcullis.project_id()), project_id));
ALTER POLICY documents_insert_permission ON documents
    WITH CHECK ((SELECT portcullis.has_permission('documents.write'))
                AND project_id = COALESCE((SELECT portcullis.project_id()), project_id));
ALTER POLICY documents_update_permission ON documents
    USING ((SELECT portcullis.has_permission('documents.write'))
           AND project_id = COALESCE((SELECT portcullis.project_id()), project_id))
    WITH CHECK ((SELECT portcullis.has_permission('documents.write'))
                AND project_id = COALESCE((SELECT portcullis.project_id()), project_id));
ALTER POLICY documents_delete_permission ON documents
    USING ((SELECT portcullis.has_permission('documents.delete'))
           AND project_id = COALESCE((SELECT portcullis.project_id()), project_id));

------------------------------------------------------------------------------------------
-- Keyrings and secrets (runtime role: SELECT, INSERT, UPDATE, DELETE on all five tables).
-- Each *_tenant policy was its table's only permissive runtime policy: all four commands keep
-- the environment term. integrations_permission, model_keys_permission and
-- key_rotation_jobs_manage are restrictive: every command keeps its term, SELECT included
-- (reading a secret or a job needs the permission, as before). The restrictive per-command
-- policies of environment_keys and data_keys (*_first, *_manage, *_remove) stay as they are.

DROP POLICY environment_keys_tenant ON environment_keys;
CREATE POLICY environment_keys_tenant_read ON environment_keys FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY environment_keys_tenant_insert ON environment_keys FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY environment_keys_tenant_update ON environment_keys FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY environment_keys_tenant_delete ON environment_keys FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));

DROP POLICY data_keys_tenant ON data_keys;
CREATE POLICY data_keys_tenant_read ON data_keys FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY data_keys_tenant_insert ON data_keys FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY data_keys_tenant_update ON data_keys FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY data_keys_tenant_delete ON data_keys FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));

DROP POLICY integrations_tenant ON integrations;
CREATE POLICY integrations_tenant_read ON integrations FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY integrations_tenant_insert ON integrations FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY integrations_tenant_update ON integrations FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY integrations_tenant_delete ON integrations FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
DROP POLICY integrations_permission ON integrations;
CREATE POLICY integrations_permission_read ON integrations AS RESTRICTIVE FOR SELECT TO portcullis_app
    USING ((SELECT portcullis.has_permission('integrations.read')) OR (SELECT portcullis.has_permission('integrations.manage')));
CREATE POLICY integrations_permission_insert ON integrations AS RESTRICTIVE FOR INSERT TO portcullis_app
    WITH CHECK ((SELECT portcullis.has_permission('integrations.manage')));
CREATE POLICY integrations_permission_update ON integrations AS RESTRICTIVE FOR UPDATE TO portcullis_app
    USING ((SELECT portcullis.has_permission('integrations.read')) OR (SELECT portcullis.has_permission('integrations.manage')))
    WITH CHECK ((SELECT portcullis.has_permission('integrations.manage')));
CREATE POLICY integrations_permission_delete ON integrations AS RESTRICTIVE FOR DELETE TO portcullis_app
    USING ((SELECT portcullis.has_permission('integrations.read')) OR (SELECT portcullis.has_permission('integrations.manage')));

DROP POLICY model_keys_tenant ON model_keys;
CREATE POLICY model_keys_tenant_read ON model_keys FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY model_keys_tenant_insert ON model_keys FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY model_keys_tenant_update ON model_keys FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY model_keys_tenant_delete ON model_keys FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
DROP POLICY model_keys_permission ON model_keys;
CREATE POLICY model_keys_permission_read ON model_keys AS RESTRICTIVE FOR SELECT TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')) OR (SELECT portcullis.has_permission('integrations.manage')));
CREATE POLICY model_keys_permission_insert ON model_keys AS RESTRICTIVE FOR INSERT TO portcullis_app
    WITH CHECK ((SELECT portcullis.has_permission('keys.manage')) OR (SELECT portcullis.has_permission('integrations.manage')));
CREATE POLICY model_keys_permission_update ON model_keys AS RESTRICTIVE FOR UPDATE TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')) OR (SELECT portcullis.has_permission('integrations.manage')))
    WITH CHECK ((SELECT portcullis.has_permission('keys.manage')) OR (SELECT portcullis.has_permission('integrations.manage')));
CREATE POLICY model_keys_permission_delete ON model_keys AS RESTRICTIVE FOR DELETE TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')) OR (SELECT portcullis.has_permission('integrations.manage')));

DROP POLICY key_rotation_jobs_tenant ON key_rotation_jobs;
CREATE POLICY key_rotation_jobs_tenant_read ON key_rotation_jobs FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY key_rotation_jobs_tenant_insert ON key_rotation_jobs FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY key_rotation_jobs_tenant_update ON key_rotation_jobs FOR UPDATE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()))
    WITH CHECK (environment_id = (SELECT portcullis.environment_id()));
CREATE POLICY key_rotation_jobs_tenant_delete ON key_rotation_jobs FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id()));
DROP POLICY key_rotation_jobs_manage ON key_rotation_jobs;
CREATE POLICY key_rotation_jobs_manage_read ON key_rotation_jobs AS RESTRICTIVE FOR SELECT TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')));
CREATE POLICY key_rotation_jobs_manage_insert ON key_rotation_jobs AS RESTRICTIVE FOR INSERT TO portcullis_app
    WITH CHECK ((SELECT portcullis.has_permission('keys.manage')));
CREATE POLICY key_rotation_jobs_manage_update ON key_rotation_jobs AS RESTRICTIVE FOR UPDATE TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')))
    WITH CHECK ((SELECT portcullis.has_permission('keys.manage')));
CREATE POLICY key_rotation_jobs_manage_delete ON key_rotation_jobs AS RESTRICTIVE FOR DELETE TO portcullis_app
    USING ((SELECT portcullis.has_permission('keys.manage')));

------------------------------------------------------------------------------------------
-- subject_keys: subject_keys_scope was the only permissive runtime policy. The runtime role
-- may SELECT, INSERT and DELETE (no UPDATE grant: the operator re-seals through
-- subject_keys_reseal), so the scope term goes to those three commands. The restrictive
-- subject_keys_own_subject (INSERT), subject_keys_platform_own (SELECT) and subject_keys_erase
-- (DELETE) stay as they are.

DROP POLICY subject_keys_scope ON subject_keys;
CREATE POLICY subject_keys_scope_read ON subject_keys FOR SELECT TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id())
           OR ((SELECT portcullis.environment_id()) IS NULL
               AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid));
CREATE POLICY subject_keys_scope_insert ON subject_keys FOR INSERT TO portcullis_app
    WITH CHECK (environment_id = (SELECT portcullis.environment_id())
                OR ((SELECT portcullis.environment_id()) IS NULL
                    AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid));
CREATE POLICY subject_keys_scope_delete ON subject_keys FOR DELETE TO portcullis_app
    USING (environment_id = (SELECT portcullis.environment_id())
           OR ((SELECT portcullis.environment_id()) IS NULL
               AND environment_id = '00000000-0000-0000-0000-000000000000'::uuid));

------------------------------------------------------------------------------------------
-- platform_keys: the schema owner's policy (operator CLI, PII key rotation) allowed every
-- command on every row; the same, one command at a time. The runtime role's
-- platform_keys_read (SELECT) and platform_keys_create (INSERT) are unchanged.
-- CURRENT_USER is the role running migrations, i.e. the schema owner.

DROP POLICY platform_keys_operator ON platform_keys;
CREATE POLICY platform_keys_operator ON platform_keys FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY platform_keys_operator_insert ON platform_keys FOR INSERT TO CURRENT_USER WITH CHECK (true);
CREATE POLICY platform_keys_operator_update ON platform_keys FOR UPDATE TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY platform_keys_operator_delete ON platform_keys FOR DELETE TO CURRENT_USER USING (true);
