-- Observers: change capture into an outbox, the dispatcher's cursor, and
-- the rules tenants manage (through GraphQL: v_observer_rule and the
-- fn_*_observer_rule functions).

-- The outbox. A trigger writes one row per changed row in the changing
-- transaction itself, so an event exists exactly when its change committed.
-- Rows are ordered by (xid, id): the dispatcher reads only rows of
-- transactions older than every running one (pg_snapshot_xmin), so no row
-- can later appear behind its cursor, whatever order transactions commit in.
CREATE TABLE fraise.observer_outbox (
    id         bigserial,
    xid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    tenant_id  uuid        NOT NULL,
    table_name text        NOT NULL,
    op         text        NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),
    key        jsonb       NOT NULL DEFAULT '{}',
    before     jsonb,
    after      jsonb,
    changed    text[]      NOT NULL DEFAULT '{}',
    tx_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (xid, id)
);
-- Only the SECURITY DEFINER functions below touch the outbox; RLS is on so
-- that a grant added by mistake still shows a tenant nothing but its own.
ALTER TABLE fraise.observer_outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON fraise.observer_outbox
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);

-- The dispatchers' positions in the outbox, one row per dispatcher name.
CREATE TABLE fraise.observer_cursors (
    name       text PRIMARY KEY,
    xid        xid8        NOT NULL DEFAULT '0',
    id         bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- capture_change is the trigger function fraise.observe_table installs. Its
-- arguments are the table's primary-key columns, computed once at install
-- time rather than looked up for every row.
CREATE FUNCTION fraise.capture_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b   jsonb;
    a   jsonb;
    src jsonb;
    ch  text[];
    k   jsonb := '{}';
    col text;
    t   uuid;
BEGIN
    IF TG_OP <> 'INSERT' THEN b := to_jsonb(OLD); END IF;
    IF TG_OP <> 'DELETE' THEN a := to_jsonb(NEW); END IF;
    src := coalesce(a, b);
    t := (src->>'tenant_id')::uuid;
    IF t IS NULL THEN
        RAISE EXCEPTION 'fraise.capture_change: %.% row has no tenant_id', TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = '23502';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        SELECT coalesce(array_agg(n.key ORDER BY n.key), '{}') INTO ch
        FROM jsonb_each(a) n WHERE n.value IS DISTINCT FROM b->n.key;
        -- An update that changed nothing is not an event.
        IF cardinality(ch) = 0 THEN RETURN NULL; END IF;
    ELSE
        ch := ARRAY(SELECT k FROM jsonb_object_keys(src) k ORDER BY k);
    END IF;
    IF TG_NARGS > 0 THEN
        FOREACH col IN ARRAY TG_ARGV LOOP
            k := k || jsonb_build_object(col, src->col);
        END LOOP;
    END IF;
    INSERT INTO fraise.observer_outbox (tenant_id, table_name, op, key, before, after, changed)
    VALUES (t, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, k, b, a, ch);
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION fraise.capture_change() FROM PUBLIC;

-- capture_rows captures inserts and deletes a statement at a time, from its
-- transition table: one INSERT ... SELECT per statement costs a fraction of
-- a row trigger per row. (Updates keep the row trigger: pairing old and new
-- rows needs no key that way.) Its arguments are the primary-key columns.
CREATE FUNCTION fraise.capture_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tbl  text   := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
    keys text[] := TG_ARGV;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO fraise.observer_outbox (tenant_id, table_name, op, key, before, after, changed)
        SELECT (r.j->>'tenant_id')::uuid, tbl, 'INSERT',
               coalesce((SELECT jsonb_object_agg(c, r.j->c) FROM unnest(keys) c), '{}'),
               NULL, r.j, ARRAY(SELECT k FROM jsonb_object_keys(r.j) k ORDER BY k)
        FROM (SELECT to_jsonb(n) AS j FROM fraise_new n) r;
    ELSE
        INSERT INTO fraise.observer_outbox (tenant_id, table_name, op, key, before, after, changed)
        SELECT (r.j->>'tenant_id')::uuid, tbl, 'DELETE',
               coalesce((SELECT jsonb_object_agg(c, r.j->c) FROM unnest(keys) c), '{}'),
               r.j, NULL, ARRAY(SELECT k FROM jsonb_object_keys(r.j) k ORDER BY k)
        FROM (SELECT to_jsonb(o) AS j FROM fraise_old o) r;
    END IF;
    PERFORM pg_notify('fraise_observer_outbox', '');
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION fraise.capture_rows() FROM PUBLIC;

-- notify_change wakes the dispatcher once per statement (a per-row
-- notification costs as much as the capture itself); identical
-- notifications of one transaction fold into one anyway.
CREATE FUNCTION fraise.notify_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_notify('fraise_observer_outbox', '');
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION fraise.notify_change() FROM PUBLIC;

-- observe_table makes every committed change of tbl (which must have a
-- tenant_id column) an event. Run it as the table's owner, e.g. in the
-- application's own migration: SELECT fraise.observe_table('public.orders').
CREATE FUNCTION fraise.observe_table(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    keys text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = 'tenant_id' AND NOT attisdropped) THEN
        RAISE EXCEPTION 'fraise.observe_table: % has no tenant_id column', tbl USING ERRCODE = '22023';
    END IF;
    SELECT string_agg(quote_literal(a.attname), ', ' ORDER BY array_position(i.indkey::int2[], a.attnum))
    INTO keys
    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
    WHERE i.indrelid = tbl AND i.indisprimary;
    PERFORM fraise.unobserve_table(tbl);
    EXECUTE format('CREATE TRIGGER fraise_observe_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS fraise_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION fraise.capture_rows(%s)', tbl, coalesce(keys, ''));
    EXECUTE format('CREATE TRIGGER fraise_observe_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS fraise_old '
                   'FOR EACH STATEMENT EXECUTE FUNCTION fraise.capture_rows(%s)', tbl, coalesce(keys, ''));
    EXECUTE format('CREATE TRIGGER fraise_observe_update AFTER UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION fraise.capture_change(%s)', tbl, coalesce(keys, ''));
    EXECUTE format('CREATE TRIGGER fraise_observe_notify AFTER UPDATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION fraise.notify_change()', tbl);
END $$;

-- unobserve_table stops capturing tbl's changes.
CREATE FUNCTION fraise.unobserve_table(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['fraise_observe_insert', 'fraise_observe_delete', 'fraise_observe_update',
                             'fraise_observe_notify'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', t, tbl);
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION fraise.observe_table(regclass), fraise.unobserve_table(regclass) FROM PUBLIC;

-- observer_read returns up to lim events after position (after_xid,
-- after_id), in (xid, id) order, only of transactions that can no longer
-- add rows before them: every transaction older than the oldest running one
-- has ended.
CREATE FUNCTION fraise.observer_read(after_xid xid8, after_id bigint, lim int)
RETURNS TABLE (xid xid8, id bigint, tenant_id uuid, table_name text, op text, key jsonb,
               before jsonb, after jsonb, changed text[], tx_time timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.xid, o.id, o.tenant_id, o.table_name, o.op, o.key, o.before, o.after, o.changed, o.tx_time
    FROM fraise.observer_outbox o
    WHERE (o.xid, o.id) > (after_xid, after_id)
      AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY o.xid, o.id
    LIMIT lim
$$;

-- observer_advance moves dispatcher name's cursor to (p_xid, p_id), never
-- backwards; with prune, it also deletes the outbox rows every cursor has
-- passed (dispatchers prune now and then, not on every batch).
CREATE FUNCTION fraise.observer_advance(p_name text, p_xid xid8, p_id bigint, prune boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    low_xid xid8;
    low_id  bigint;
BEGIN
    INSERT INTO fraise.observer_cursors AS c (name, xid, id) VALUES (p_name, p_xid, p_id)
    ON CONFLICT (name) DO UPDATE SET xid = excluded.xid, id = excluded.id, updated_at = now()
    WHERE (c.xid, c.id) < (excluded.xid, excluded.id);
    IF prune THEN
        SELECT c.xid, c.id INTO low_xid, low_id FROM fraise.observer_cursors c ORDER BY c.xid, c.id LIMIT 1;
        DELETE FROM fraise.observer_outbox o WHERE (o.xid, o.id) <= (low_xid, low_id);
    END IF;
END $$;

-- observer_position returns dispatcher name's cursor and how many events
-- wait behind it (for metrics and the CLI).
CREATE FUNCTION fraise.observer_position(p_name text, OUT xid xid8, OUT id bigint, OUT pending bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(c.xid, '0'), coalesce(c.id, 0),
           (SELECT count(*) FROM fraise.observer_outbox o
            WHERE (o.xid, o.id) > (coalesce(c.xid, '0'::xid8), coalesce(c.id, 0::bigint)))
    FROM (SELECT 1) one LEFT JOIN fraise.observer_cursors c ON c.name = p_name
$$;

-- The rules. A rule watches one table for some operations, filters events
-- with a CEL condition (validated in Go before it is stored) and runs up to
-- ten actions.
CREATE TABLE fraise.observer_rules (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid        NOT NULL,
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    table_name text        NOT NULL CHECK (table_name ~ '^[a-z_][a-z0-9_$]*\.[a-z_][a-z0-9_$]*$'),
    operations text[]      NOT NULL DEFAULT '{INSERT,UPDATE,DELETE}'
               CHECK (cardinality(operations) > 0 AND operations <@ '{INSERT,UPDATE,DELETE}'),
    condition  text        NOT NULL DEFAULT '' CHECK (length(condition) <= 4096),
    actions    jsonb       NOT NULL CHECK (jsonb_typeof(actions) = 'array'
                                           AND jsonb_array_length(actions) BETWEEN 1 AND 10),
    enabled    boolean     NOT NULL DEFAULT true,
    version    integer     NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE INDEX observer_rules_tenant_table_idx ON fraise.observer_rules (tenant_id, table_name);
ALTER TABLE fraise.observer_rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE fraise.observer_rules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON fraise.observer_rules
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);

-- Dispatchers reload their rules when told.
CREATE FUNCTION fraise.observer_rules_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fraise_observer_rules', '');
    RETURN NULL;
END $$;
CREATE TRIGGER observer_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON fraise.observer_rules
    FOR EACH STATEMENT EXECUTE FUNCTION fraise.observer_rules_changed();

-- observer_rules_enabled returns every tenant's enabled rules, for the
-- dispatcher, which serves all tenants.
CREATE FUNCTION fraise.observer_rules_enabled()
RETURNS TABLE (id uuid, tenant_id uuid, name text, table_name text, operations text[], condition text,
               actions jsonb, version integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.id, r.tenant_id, r.name, r.table_name, r.operations, r.condition, r.actions, r.version
    FROM fraise.observer_rules r WHERE r.enabled ORDER BY r.tenant_id, r.name
$$;
REVOKE ALL ON FUNCTION fraise.observer_read(xid8, bigint, int), fraise.observer_advance(text, xid8, bigint, boolean),
    fraise.observer_position(text), fraise.observer_rules_enabled() FROM PUBLIC;

-- v_observer_rule is the GraphQL read model: (id, tenant_id, data), with
-- action secrets left out.
CREATE VIEW public.v_observer_rule WITH (security_invoker = true) AS
SELECT r.id, r.tenant_id,
       jsonb_build_object(
           'id', r.id, 'name', r.name, 'table', r.table_name, 'operations', to_jsonb(r.operations),
           'condition', r.condition,
           'actions', (SELECT coalesce(jsonb_agg(a - 'secret' - 'password' ORDER BY n), '[]')
                       FROM jsonb_array_elements(r.actions) WITH ORDINALITY AS x(a, n)),
           'enabled', r.enabled, 'version', r.version,
           'createdAt', r.created_at, 'updatedAt', r.updated_at) AS data
FROM fraise.observer_rules r;

-- The mutations' result: status is ok, invalid, not_found, conflict or
-- quota_exceeded; data is the rule as v_observer_rule shows it.
CREATE TYPE fraise.observer_rule_result AS (status text, message text, id uuid, data jsonb);

-- observer_rule_check returns why input does not describe a valid rule
-- (NULL when it does). The CEL condition itself is checked in Go.
CREATE FUNCTION fraise.observer_rule_check(input jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    a jsonb;
BEGIN
    IF jsonb_typeof(input) IS DISTINCT FROM 'object' THEN RETURN 'input must be an object'; END IF;
    IF input ? 'name' AND coalesce(length(input->>'name'), 0) NOT BETWEEN 1 AND 200 THEN
        RETURN 'name must be 1 to 200 characters';
    END IF;
    IF input ? 'table' AND coalesce(input->>'table', '') !~ '^[a-z_][a-z0-9_$]*\.[a-z_][a-z0-9_$]*$' THEN
        RETURN 'table must be schema.table in lower case';
    END IF;
    IF input ? 'operations' AND (jsonb_typeof(input->'operations') <> 'array'
        OR jsonb_array_length(input->'operations') = 0
        OR EXISTS (SELECT 1 FROM jsonb_array_elements(input->'operations') o
                   WHERE jsonb_typeof(o) <> 'string' OR o #>> '{}' NOT IN ('INSERT', 'UPDATE', 'DELETE'))) THEN
        RETURN 'operations must be a non-empty list of INSERT, UPDATE and DELETE';
    END IF;
    IF input ? 'condition' AND jsonb_typeof(input->'condition') NOT IN ('string', 'null') THEN
        RETURN 'condition must be a string';
    END IF;
    IF input ? 'actions' THEN
        IF jsonb_typeof(input->'actions') <> 'array' OR jsonb_array_length(input->'actions') NOT BETWEEN 1 AND 10 THEN
            RETURN 'actions must be a list of 1 to 10 actions';
        END IF;
        FOR a IN SELECT * FROM jsonb_array_elements(input->'actions') LOOP
            IF jsonb_typeof(a) <> 'object' OR a->>'kind' IS NULL OR a->>'kind' NOT IN ('webhook', 'slack', 'email') THEN
                RETURN 'each action needs a kind: webhook, slack or email';
            END IF;
            IF a->>'kind' IN ('webhook', 'slack') AND coalesce(a->>'url', '') !~ '^https?://' THEN
                RETURN a->>'kind' || ' action needs an http(s) url';
            END IF;
            IF a->>'kind' = 'email' AND (jsonb_typeof(a->'to') IS DISTINCT FROM 'array' OR jsonb_array_length(a->'to') = 0) THEN
                RETURN 'email action needs a list of recipients in to';
            END IF;
        END LOOP;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION fraise.observer_rule_result(st text, msg text, rid uuid) RETURNS fraise.observer_rule_result
LANGUAGE sql STABLE AS $$
    SELECT ROW(st, msg, rid, (SELECT v.data FROM public.v_observer_rule v WHERE v.id = rid))::fraise.observer_rule_result
$$;

-- fn_create_observer_rule creates a rule for the current tenant from
-- input {name, table, operations?, condition?, actions, enabled?}.
CREATE FUNCTION public.fn_create_observer_rule(input jsonb) RETURNS fraise.observer_rule_result
LANGUAGE plpgsql AS $$
DECLARE
    problem text := fraise.observer_rule_check(input);
    tenant  uuid := nullif(current_setting('fraise.tenant', true), '')::uuid;
    rid     uuid;
BEGIN
    IF tenant IS NULL THEN RETURN fraise.observer_rule_result('invalid', 'no tenant', NULL); END IF;
    IF problem IS NULL AND (NOT input ? 'name' OR NOT input ? 'table' OR NOT input ? 'actions') THEN
        problem := 'name, table and actions are required';
    END IF;
    IF problem IS NOT NULL THEN RETURN fraise.observer_rule_result('invalid', problem, NULL); END IF;
    -- Tenant quotas (0008) are triggers on fraise.observer_rules: past the
    -- tier's limit the insert raises QUOTA_EXCEEDED.
    BEGIN
        INSERT INTO fraise.observer_rules (tenant_id, name, table_name, operations, condition, actions, enabled)
        VALUES (tenant, input->>'name', input->>'table',
                coalesce((SELECT array_agg(o) FROM jsonb_array_elements_text(input->'operations') o),
                         '{INSERT,UPDATE,DELETE}'),
                coalesce(input->>'condition', ''), input->'actions', coalesce((input->>'enabled')::boolean, true))
        RETURNING id INTO rid;
    EXCEPTION WHEN unique_violation THEN
        RETURN fraise.observer_rule_result('conflict', 'a rule with this name exists', NULL);
    END;
    RETURN fraise.observer_rule_result('ok', NULL, rid);
END $$;

-- fn_update_observer_rule changes the keys present in input of rule rid.
CREATE FUNCTION public.fn_update_observer_rule(rid uuid, input jsonb) RETURNS fraise.observer_rule_result
LANGUAGE plpgsql AS $$
DECLARE
    problem text := fraise.observer_rule_check(input);
    found_id uuid;
BEGIN
    IF problem IS NOT NULL THEN RETURN fraise.observer_rule_result('invalid', problem, NULL); END IF;
    BEGIN
        UPDATE fraise.observer_rules r SET
            name       = coalesce(input->>'name', r.name),
            table_name = coalesce(input->>'table', r.table_name),
            operations = coalesce((SELECT array_agg(o) FROM jsonb_array_elements_text(input->'operations') o), r.operations),
            condition  = CASE WHEN input ? 'condition' THEN coalesce(input->>'condition', '') ELSE r.condition END,
            actions    = coalesce(input->'actions', r.actions),
            enabled    = coalesce((input->>'enabled')::boolean, r.enabled),
            version    = r.version + 1,
            updated_at = now()
        WHERE r.id = rid
        RETURNING r.id INTO found_id;
    EXCEPTION WHEN unique_violation THEN
        RETURN fraise.observer_rule_result('conflict', 'a rule with this name exists', NULL);
    END;
    IF found_id IS NULL THEN RETURN fraise.observer_rule_result('not_found', 'no such rule', NULL); END IF;
    RETURN fraise.observer_rule_result('ok', NULL, rid);
END $$;

CREATE FUNCTION fraise.observer_rule_set_enabled(rid uuid, on_off boolean) RETURNS fraise.observer_rule_result
LANGUAGE plpgsql AS $$
DECLARE
    found_id uuid;
BEGIN
    UPDATE fraise.observer_rules r SET enabled = on_off, version = r.version + 1, updated_at = now()
    WHERE r.id = rid RETURNING r.id INTO found_id;
    IF found_id IS NULL THEN RETURN fraise.observer_rule_result('not_found', 'no such rule', NULL); END IF;
    RETURN fraise.observer_rule_result('ok', NULL, rid);
END $$;

-- fn_enable_observer_rule and fn_disable_observer_rule switch rule rid.
CREATE FUNCTION public.fn_enable_observer_rule(rid uuid) RETURNS fraise.observer_rule_result
LANGUAGE sql AS $$ SELECT fraise.observer_rule_set_enabled(rid, true) $$;
CREATE FUNCTION public.fn_disable_observer_rule(rid uuid) RETURNS fraise.observer_rule_result
LANGUAGE sql AS $$ SELECT fraise.observer_rule_set_enabled(rid, false) $$;

-- fn_delete_observer_rule deletes rule rid; data is the rule as it was.
CREATE FUNCTION public.fn_delete_observer_rule(rid uuid) RETURNS fraise.observer_rule_result
LANGUAGE plpgsql AS $$
DECLARE
    old jsonb;
BEGIN
    SELECT v.data INTO old FROM public.v_observer_rule v WHERE v.id = rid;
    DELETE FROM fraise.observer_rules r WHERE r.id = rid;
    IF NOT FOUND THEN RETURN fraise.observer_rule_result('not_found', 'no such rule', NULL); END IF;
    RETURN ROW('ok', NULL::text, rid, old)::fraise.observer_rule_result;
END $$;

-- grant_observers gives the core's role what observers need; Migrate calls
-- every fraise.grant_* function with the application role after migrating.
CREATE FUNCTION fraise.grant_observers(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON fraise.observer_rules TO %I', role);
    EXECUTE format('GRANT SELECT ON public.v_observer_rule TO %I', role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION fraise.observer_read(xid8, bigint, int), '
                   'fraise.observer_advance(text, xid8, bigint, boolean), fraise.observer_position(text), '
                   'fraise.observer_rules_enabled() TO %I', role);
END $$;
