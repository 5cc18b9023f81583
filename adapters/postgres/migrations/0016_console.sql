-- The console: what the decision log keeps for it, and the reads it makes.
--
-- Each decision now keeps the request's method, path and trace id, and the
-- policy's input document (credentials removed), so that the console's
-- policy playground can replay real decisions against a draft policy and
-- open one in the playground. The input is nullable: decisions refused
-- before the policy was asked (no token) have none, nor do older rows.

ALTER TABLE fraise.authz_decisions
    ADD COLUMN IF NOT EXISTS method   text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS path     text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS trace_id text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS input    jsonb;

CREATE OR REPLACE FUNCTION fraise.authz_decisions_record(d jsonb)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, fraise AS $$
    INSERT INTO fraise.authz_decisions (decision_id, request_id, decided_at, subject, tenant_id, kind,
        operation, operation_name, allow, status, reason, policy_revision, latency_us,
        method, path, trace_id, input)
    SELECT r.decision_id, r.request_id, r.decided_at, r.subject, r.tenant_id, r.kind,
        r.operation, r.operation_name, r.allow, r.status, r.reason, r.policy_revision, r.latency_us,
        coalesce(r.method, ''), coalesce(r.path, ''), coalesce(r.trace_id, ''), r.input
    FROM jsonb_to_recordset(d) AS r(decision_id text, request_id text, decided_at timestamptz,
        subject text, tenant_id uuid, kind text, operation text, operation_name text, allow boolean,
        status integer, reason text, policy_revision text, latency_us bigint,
        method text, path text, trace_id text, input jsonb)
    ON CONFLICT (decision_id) DO NOTHING
$$;

-- console_decisions returns the current tenant's decisions (fraise.tenant,
-- as row-level security reads it) newest first, filtered by f: tenant is
-- never a filter of the caller's choosing. SECURITY DEFINER because the
-- application role has no grant on the audit table: it reads through this
-- function alone, and only its own tenant's rows.
CREATE OR REPLACE FUNCTION fraise.console_decisions(f jsonb)
RETURNS SETOF jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, fraise AS $$
    SELECT jsonb_build_object(
        'id', d.decision_id, 'request_id', d.request_id, 'decided_at', d.decided_at,
        'subject', d.subject, 'tenant_id', d.tenant_id, 'kind', d.kind,
        'operation', d.operation, 'operation_name', d.operation_name, 'allow', d.allow,
        'status', d.status, 'reason', d.reason, 'policy_revision', d.policy_revision,
        'latency_us', d.latency_us, 'method', d.method, 'path', d.path, 'trace_id', d.trace_id,
        'input', d.input)
    FROM fraise.authz_decisions d
    WHERE d.tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid
      AND (f->>'subject' IS NULL OR d.subject = f->>'subject')
      AND (f->>'operation' IS NULL OR d.operation = f->>'operation' OR d.operation_name = f->>'operation')
      AND (f->>'allow' IS NULL OR d.allow = (f->>'allow')::boolean)
      AND (f->>'reason' IS NULL OR strpos(lower(d.reason), lower(f->>'reason')) > 0)
      AND (f->>'since' IS NULL OR d.decided_at >= (f->>'since')::timestamptz)
      AND (f->>'until' IS NULL OR d.decided_at < (f->>'until')::timestamptz)
      AND (coalesce((f->>'with_input')::boolean, false) = false OR d.input IS NOT NULL)
      AND (coalesce((f->>'exclude_console')::boolean, false) = false
           OR NOT (d.path = '/console' OR starts_with(d.path, '/console/')))
    ORDER BY d.decided_at DESC, d.decision_id
    LIMIT least(greatest(coalesce((f->>'limit')::int, 100), 1), 1000)
$$;
REVOKE ALL ON FUNCTION fraise.console_decisions(jsonb) FROM PUBLIC;

-- console_refusals counts the current tenant's refused decisions by hour
-- and kind (429: rate limited, 503: admission) since a time.
CREATE OR REPLACE FUNCTION fraise.console_refusals(since timestamptz)
RETURNS TABLE (hour timestamptz, ratelimit bigint, admission bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, fraise AS $$
    SELECT date_trunc('hour', d.decided_at),
           count(*) FILTER (WHERE d.status = 429),
           count(*) FILTER (WHERE d.status = 503)
    FROM fraise.authz_decisions d
    WHERE d.tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid
      AND d.decided_at >= since AND d.status IN (429, 503)
    GROUP BY 1 ORDER BY 1
$$;
REVOKE ALL ON FUNCTION fraise.console_refusals(timestamptz) FROM PUBLIC;

-- grant_console lets the core's role (which serves the console) call the
-- reads above; Migrate calls every fraise.grant_* function with the
-- application role.
CREATE OR REPLACE FUNCTION fraise.grant_console(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION fraise.console_decisions(jsonb), fraise.console_refusals(timestamptz) TO %I', role);
END $$;
