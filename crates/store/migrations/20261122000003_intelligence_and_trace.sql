-- The other two audit streams (L1): every AI call, and the tool-call steps behind an agent's
-- actions. Append-only like audit_log; written by the LLM gateway and the agent runtime.

CREATE TABLE intelligence_log (
    environment_id     uuid NOT NULL,
    entry_id           uuid NOT NULL,
    occurred_at        timestamptz NOT NULL,
    actor_type         text NOT NULL CHECK (actor_type IN ('identity','api_token','system','anonymous')),
    actor_id           uuid,
    workflow_id        text,
    model              text NOT NULL,
    -- Whose model key paid: the environment's own, the platform's, or a self-hosted model.
    key_source         text NOT NULL CHECK (key_source IN ('byok','platform','self_hosted')),
    input              jsonb NOT NULL,
    output             jsonb,
    reasoning_excerpt  text CHECK (length(reasoning_excerpt) <= 4000),
    input_tokens       integer NOT NULL CHECK (input_tokens >= 0),
    output_tokens      integer NOT NULL CHECK (output_tokens >= 0),
    -- Millionths of a US dollar.
    cost_micros        bigint NOT NULL CHECK (cost_micros >= 0),
    success            boolean NOT NULL,
    error              text,
    request_id         text,
    PRIMARY KEY (environment_id, entry_id)
);
CREATE INDEX intelligence_log_time ON intelligence_log (environment_id, occurred_at);
CREATE INDEX intelligence_log_workflow ON intelligence_log (environment_id, workflow_id) WHERE workflow_id IS NOT NULL;

CREATE TABLE kernel_trace (
    environment_id  uuid NOT NULL,
    trace_id        uuid NOT NULL,
    step            integer NOT NULL CHECK (step >= 1),
    occurred_at     timestamptz NOT NULL,
    workflow_id     text,
    -- The intelligence_log entry (model call) this step came from, if any.
    intelligence_entry_id uuid,
    kind            text NOT NULL CHECK (kind IN ('tool_call','tool_result','decision','approval','note')),
    tool            text,
    tool_use_id     text,
    arguments       jsonb,
    result          jsonb,
    rationale       text CHECK (length(rationale) <= 4000),
    PRIMARY KEY (environment_id, trace_id, step)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['intelligence_log','kernel_trace']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR INSERT TO portcullis_app
                          WITH CHECK (environment_id = (SELECT portcullis.environment_id()))', t || '_append', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO portcullis_app
                          USING (environment_id = (SELECT portcullis.environment_id()) AND (SELECT portcullis.has_permission(''audit.read'')))', t || '_read', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION portcullis.refuse_audit_change()', t || '_no_update_delete', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION portcullis.refuse_audit_change()', t || '_no_truncate', t);
        EXECUTE format('GRANT SELECT, INSERT ON %I TO portcullis_app', t);
    END LOOP;
END $$;
