-- Tenant quotas: each tenant has a tier (fraise.tenants.tier), each tier
-- limits resources (data, in fraise.tier_quotas), and what a tenant uses is
-- counted in fraise.quota_usage. Creating a resource over its limit raises
-- SQLSTATE FQ001, which the core reports as QUOTA_EXCEEDED.
--
-- Resources: "observer_rules" (rules per tenant, counted) and
-- "actions_per_rule" (checked against the count the caller passes).

CREATE TABLE IF NOT EXISTS fraise.tier_quotas (
    tier      text   NOT NULL,
    resource  text   NOT NULL,
    max_count bigint NOT NULL CHECK (max_count >= 0),
    PRIMARY KEY (tier, resource)
);

-- The defaults of the hardening plan (section 6.5); edit them as data. A
-- tier without a row for a resource gets the default tier's limit, and a
-- resource without a default row is unlimited.
INSERT INTO fraise.tier_quotas (tier, resource, max_count) VALUES
    ('default',    'observer_rules',   100),
    ('default',    'actions_per_rule', 10),
    ('enterprise', 'observer_rules',   10000),
    ('enterprise', 'actions_per_rule', 1000)
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS fraise.quota_usage (
    tenant_id uuid   NOT NULL,
    resource  text   NOT NULL,
    used      bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (tenant_id, resource)
);
ALTER TABLE fraise.quota_usage ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON fraise.quota_usage;
CREATE POLICY tenant_isolation ON fraise.quota_usage
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);

-- quota_limit is a tier's limit for a resource, falling back to the default
-- tier's (unknown tiers included); NULL means unlimited. It and tenant_tier
-- are security definers because the views call them with the caller's
-- rights, and the app role has no grant on the tables they read.
CREATE OR REPLACE FUNCTION fraise.quota_limit(p_tier text, p_resource text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, fraise AS $$
    SELECT coalesce(
        (SELECT max_count FROM fraise.tier_quotas WHERE tier = p_tier AND resource = p_resource),
        (SELECT max_count FROM fraise.tier_quotas WHERE tier = 'default' AND resource = p_resource))
$$;

CREATE OR REPLACE FUNCTION fraise.tenant_tier(p_tenant uuid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, fraise AS $$
    SELECT coalesce((SELECT tier FROM fraise.tenants WHERE id = p_tenant), 'default')
$$;

CREATE OR REPLACE FUNCTION fraise.raise_quota_exceeded(p_resource text, p_limit bigint, p_used bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, fraise AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'FQ001',
        MESSAGE = format('quota exceeded: %s (limit %s)', p_resource, p_limit),
        DETAIL  = jsonb_build_object('resource', p_resource, 'limit', p_limit, 'used', p_used)::text,
        HINT    = 'delete unused resources or move the tenant to a higher tier';
END
$$;

-- check_quota raises FQ001 when the current tenant (fraise.tenant) cannot
-- have amount more of resource: used + amount would pass its tier's limit.
-- For a per-parent resource such as actions_per_rule, which is not
-- counted, pass the parent's new total: check_quota('actions_per_rule', 12).
-- Call it before creating a resource to fail early with a clear error; the
-- counting trigger (track_quota) enforces the same limit exactly, also
-- under concurrent inserts.
CREATE OR REPLACE FUNCTION fraise.check_quota(resource text, amount bigint DEFAULT 1) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, fraise AS $$
DECLARE
    v_tenant uuid := nullif(current_setting('fraise.tenant', true), '')::uuid;
    v_limit  bigint;
    v_used   bigint;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'fraise.tenant is not set' USING ERRCODE = '42501';
    END IF;
    v_limit := fraise.quota_limit(fraise.tenant_tier(v_tenant), check_quota.resource);
    IF v_limit IS NULL THEN
        RETURN;
    END IF;
    SELECT u.used INTO v_used FROM fraise.quota_usage u
    WHERE u.tenant_id = v_tenant AND u.resource = check_quota.resource;
    v_used := coalesce(v_used, 0);
    IF v_used + amount > v_limit THEN
        PERFORM fraise.raise_quota_exceeded(check_quota.resource, v_limit, v_used);
    END IF;
END
$$;

-- count_quota is the trigger track_quota attaches: it counts a table's rows
-- per tenant into quota_usage and refuses the insert that would pass the
-- limit. The upsert locks the tenant's usage row, so concurrent inserts
-- are counted one after the other and the limit holds exactly.
CREATE OR REPLACE FUNCTION fraise.count_quota() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, fraise AS $$
DECLARE
    v_resource text := TG_ARGV[0];
    v_used     bigint;
    v_limit    bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO fraise.quota_usage AS u (tenant_id, resource, used) VALUES (NEW.tenant_id, v_resource, 1)
        ON CONFLICT (tenant_id, resource) DO UPDATE SET used = u.used + 1
        RETURNING u.used INTO v_used;
        v_limit := fraise.quota_limit(fraise.tenant_tier(NEW.tenant_id), v_resource);
        IF v_limit IS NOT NULL AND v_used > v_limit THEN
            PERFORM fraise.raise_quota_exceeded(v_resource, v_limit, v_used - 1);
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE fraise.quota_usage SET used = greatest(used - 1, 0)
        WHERE tenant_id = OLD.tenant_id AND resource = v_resource;
    END IF;
    RETURN NULL;
END
$$;

-- track_quota counts rel's rows (it must have tenant_id) as resource from
-- now on, starting from the rows it already has. Idempotent. The observers'
-- migration calls it for its rules table:
--   SELECT fraise.track_quota('observer_rules', 'fraise.observer_rules');
CREATE OR REPLACE FUNCTION fraise.track_quota(p_resource text, p_rel regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, fraise AS $$
DECLARE
    v_trigger text := 'fraise_quota_' || p_resource;
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', v_trigger, p_rel);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION fraise.count_quota(%L)',
                   v_trigger, p_rel, p_resource);
    DELETE FROM fraise.quota_usage WHERE resource = p_resource;
    EXECUTE format('INSERT INTO fraise.quota_usage (tenant_id, resource, used) SELECT tenant_id, %L, count(*) FROM %s GROUP BY tenant_id',
                   p_resource, p_rel);
END
$$;
REVOKE ALL ON FUNCTION fraise.track_quota(text, regclass) FROM PUBLIC;

-- The GraphQL views: rows of (id, tenant_id, data jsonb), the current
-- tenant's only. They run with their owner's rights (the app role has no
-- grant on the tables) and filter on fraise.tenant exactly as row-level
-- security does; security_barrier keeps a caller's predicates from seeing
-- other rows first.
CREATE OR REPLACE VIEW public.v_quota_usage WITH (security_barrier = true) AS
SELECT md5(t.id::text || '/' || r.resource)::uuid AS id,
       t.id AS tenant_id,
       jsonb_build_object(
           'id', md5(t.id::text || '/' || r.resource)::uuid,
           'resource', r.resource,
           'tier', t.tier,
           'limit', fraise.quota_limit(t.tier, r.resource),
           'used', coalesce(u.used, 0)) AS data
FROM fraise.tenants t
CROSS JOIN (SELECT DISTINCT resource FROM fraise.tier_quotas) r
LEFT JOIN fraise.quota_usage u ON u.tenant_id = t.id AND u.resource = r.resource
WHERE t.id = nullif(current_setting('fraise.tenant', true), '')::uuid;

CREATE OR REPLACE VIEW public.v_tenant_quota WITH (security_barrier = true) AS
SELECT t.id,
       t.id AS tenant_id,
       jsonb_build_object(
           'id', t.id,
           'tier', t.tier,
           'quotas', coalesce((SELECT jsonb_agg(q.data ORDER BY q.data->>'resource') FROM public.v_quota_usage q), '[]'::jsonb)) AS data
FROM fraise.tenants t
WHERE t.id = nullif(current_setting('fraise.tenant', true), '')::uuid;

GRANT SELECT ON public.v_quota_usage, public.v_tenant_quota TO PUBLIC;
