-- The GraphQL engine's contract with the database: the composite type
-- mutation functions (fn_<name>(input jsonb)) return, and the audit log
-- every mutation writes a row to, in the request's transaction.
CREATE TYPE fraise.mutation_result AS (
    succeeded   boolean,
    status      text,   -- what happened, e.g. created, updated, invalid
    error_class text,   -- NULL on success; validation, not_found, conflict, ...
    message     text,   -- for people, never parsed
    entity_id   uuid,   -- the resource the audit row names
    entity      jsonb   -- the entity in its view's data shape
);

CREATE TABLE fraise.audit_log (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    subject     text NOT NULL,
    operation   text NOT NULL,
    resource_id text,
    outcome     text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant_at_idx ON fraise.audit_log (tenant_id, at);
ALTER TABLE fraise.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE fraise.audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON fraise.audit_log
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);

-- The core's role gets no privilege on the table: it appends through this
-- function, which takes the tenant from the transaction's setting, so the
-- log is append-only and tenant-bound for it.
CREATE FUNCTION fraise.audit(subject text, operation text, resource text, outcome text) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, fraise AS $$
    INSERT INTO fraise.audit_log (tenant_id, subject, operation, resource_id, outcome)
    VALUES (nullif(current_setting('fraise.tenant', true), '')::uuid, subject, operation, resource, outcome)
    RETURNING to_jsonb(id)
$$;
