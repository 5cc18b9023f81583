-- extauthz: API keys (only a hash of each secret) and the audit log of
-- authorization decisions.
--
-- extauthz looks a key up by its id before it knows the tenant, so reads
-- across tenants go through SECURITY DEFINER functions that return one key
-- by id (never a listing) and record last-use times; the application role
-- gets no direct access to the tables. People manage keys with
-- `fraise apikey`, which connects as the schema owner.

CREATE TABLE IF NOT EXISTS fraise.api_keys (
    id           text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    tenant_id    uuid NOT NULL,
    name         text NOT NULL DEFAULT '',
    roles        text[] NOT NULL DEFAULT '{}',
    scopes       text[] NOT NULL DEFAULT '{}',
    secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

CREATE INDEX IF NOT EXISTS api_keys_tenant ON fraise.api_keys (tenant_id, created_at DESC);

ALTER TABLE fraise.api_keys ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS api_keys_tenant ON fraise.api_keys;
CREATE POLICY api_keys_tenant ON fraise.api_keys
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);

CREATE OR REPLACE FUNCTION fraise.api_key_get(key_id text)
RETURNS TABLE (id text, tenant_id uuid, name text, roles text[], scopes text[], secret_hash bytea,
               created_by text, created_at timestamptz, expires_at timestamptz,
               revoked_at timestamptz, last_used_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, fraise AS $$
    SELECT k.id, k.tenant_id, k.name, k.roles, k.scopes, k.secret_hash, k.created_by,
           k.created_at, k.expires_at, k.revoked_at, k.last_used_at
    FROM fraise.api_keys k WHERE k.id = key_id
$$;

CREATE OR REPLACE FUNCTION fraise.api_key_touch(ids text[], used timestamptz[])
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, fraise AS $$
    UPDATE fraise.api_keys k SET last_used_at = greatest(k.last_used_at, u.used)
    FROM unnest(ids, used) AS u(id, used) WHERE k.id = u.id
$$;

CREATE TABLE IF NOT EXISTS fraise.authz_decisions (
    decision_id     text PRIMARY KEY,
    request_id      text NOT NULL DEFAULT '',
    decided_at      timestamptz NOT NULL,
    subject         text NOT NULL DEFAULT '',
    tenant_id       uuid,
    kind            text NOT NULL DEFAULT '',
    operation       text NOT NULL DEFAULT '',
    operation_name  text NOT NULL DEFAULT '',
    allow           boolean NOT NULL,
    status          integer NOT NULL DEFAULT 0,
    reason          text NOT NULL DEFAULT '',
    policy_revision text NOT NULL DEFAULT '',
    latency_us      bigint NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS authz_decisions_tenant ON fraise.authz_decisions (tenant_id, decided_at DESC);

-- Decisions without a tenant (refused tokens) are visible only to the
-- owner; a tenant sees its own.
ALTER TABLE fraise.authz_decisions ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS authz_decisions_tenant ON fraise.authz_decisions;
CREATE POLICY authz_decisions_tenant ON fraise.authz_decisions
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);

-- extauthz appends decisions through this function only, so the role it
-- connects as can neither read nor rewrite the audit log.
CREATE OR REPLACE FUNCTION fraise.authz_decisions_record(d jsonb)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, fraise AS $$
    INSERT INTO fraise.authz_decisions (decision_id, request_id, decided_at, subject, tenant_id, kind,
        operation, operation_name, allow, status, reason, policy_revision, latency_us)
    SELECT r.decision_id, r.request_id, r.decided_at, r.subject, r.tenant_id, r.kind,
        r.operation, r.operation_name, r.allow, r.status, r.reason, r.policy_revision, r.latency_us
    FROM jsonb_to_recordset(d) AS r(decision_id text, request_id text, decided_at timestamptz,
        subject text, tenant_id uuid, kind text, operation text, operation_name text, allow boolean,
        status integer, reason text, policy_revision text, latency_us bigint)
    ON CONFLICT (decision_id) DO NOTHING
$$;

-- The functions keep PostgreSQL's default EXECUTE for PUBLIC: reaching them
-- needs USAGE on schema fraise, which `fraise migrate` grants only to the
-- application role.
