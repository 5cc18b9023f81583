-- Observer rules name the columns they capture (security issue 13, defect
-- 7c). The outbox keeps whole rows, since rules differ in what they want;
-- a rule's condition, templates and jobs see only its columns, which the
-- dispatcher cuts each event down to (core/observe). Naming a column the
-- GraphQL schema protects (@mask, @auth) needs the author's scope, checked
-- in Go before the rule functions run.
--
-- columns is NULL for rules written before this migration: they capture
-- every column the served schema does not protect, so what they sent of
-- protected fields stops, and the rest goes on.
ALTER TABLE fraise.observer_rules ADD COLUMN columns text[]
    CHECK (columns IS NULL OR (cardinality(columns) <= 1600 AND array_position(columns, NULL) IS NULL));

-- observer_rule_columns_check returns why input's columns are not a list of
-- column names (NULL when they are, or when input has none).
CREATE FUNCTION fraise.observer_rule_columns_check(input jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
    SELECT CASE
        WHEN NOT input ? 'columns' OR jsonb_typeof(input->'columns') = 'null' THEN NULL
        WHEN jsonb_typeof(input->'columns') <> 'array' OR jsonb_array_length(input->'columns') > 1600
            OR EXISTS (SELECT 1 FROM jsonb_array_elements(input->'columns') c
                       WHERE jsonb_typeof(c) <> 'string' OR octet_length(c #>> '{}') NOT BETWEEN 1 AND 63)
            THEN 'columns must be a list of at most 1600 column names of 1 to 63 bytes'
    END
$$;

-- observer_rule_columns returns input's columns as stored: NULL when it
-- names none.
CREATE FUNCTION fraise.observer_rule_columns(input jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
    SELECT CASE WHEN jsonb_typeof(input->'columns') = 'array'
                THEN ARRAY(SELECT DISTINCT c FROM jsonb_array_elements_text(input->'columns') c ORDER BY c) END
$$;

-- v_observer_rule shows columns (null for a rule that names none).
CREATE OR REPLACE VIEW public.v_observer_rule WITH (security_invoker = true) AS
SELECT r.id, r.tenant_id,
       jsonb_build_object(
           'id', r.id, 'name', r.name, 'table', r.table_name, 'operations', to_jsonb(r.operations),
           'condition', r.condition,
           'actions', (SELECT coalesce(jsonb_agg((a - 'secret' - 'password')
                                                 || jsonb_build_object('secretUrl', coalesce((a->>'secretUrl')::boolean, false),
                                                                       'signed', coalesce((a->>'signed')::boolean, false))
                                                 ORDER BY n), '[]')
                       FROM jsonb_array_elements(r.actions) WITH ORDINALITY AS x(a, n)),
           'enabled', r.enabled, 'version', r.version,
           'createdAt', r.created_at, 'updatedAt', r.updated_at,
           'columns', to_jsonb(r.columns)) AS data
FROM fraise.observer_rules r;

-- observer_rules_enabled returns the columns too (its result type
-- changes, so it is made anew).
DROP FUNCTION fraise.observer_rules_enabled();
CREATE FUNCTION fraise.observer_rules_enabled()
RETURNS TABLE (id uuid, tenant_id uuid, name text, table_name text, operations text[], condition text,
               actions jsonb, version integer, columns text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.id, r.tenant_id, r.name, r.table_name, r.operations, r.condition,
           (SELECT coalesce(jsonb_agg((x.a - 'secretUrl' - 'signed')
                                      || CASE WHEN s.url IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('url', s.url) END
                                      || CASE WHEN s.secret IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('secret', s.secret) END
                                      ORDER BY x.n), '[]')
            FROM jsonb_array_elements(r.actions) WITH ORDINALITY AS x(a, n)
            LEFT JOIN fraise.observer_action_secrets s ON s.rule_id = r.id AND s.action = x.n - 1),
           r.version, r.columns
    FROM fraise.observer_rules r WHERE r.enabled ORDER BY r.tenant_id, r.name
$$;
REVOKE ALL ON FUNCTION fraise.observer_rules_enabled() FROM PUBLIC;

-- fn_create_observer_rule and fn_update_observer_rule as in 0010, with
-- columns: {..., columns?}; an update without a list of columns keeps the
-- rule's.
CREATE OR REPLACE FUNCTION public.fn_create_observer_rule(input jsonb) RETURNS fraise.observer_rule_result
LANGUAGE plpgsql AS $$
DECLARE
    problem text := coalesce(fraise.observer_rule_check(input), fraise.observer_rule_columns_check(input));
    tenant  uuid := nullif(current_setting('fraise.tenant', true), '')::uuid;
    rid     uuid;
BEGIN
    IF tenant IS NULL THEN RETURN fraise.observer_rule_result('invalid', 'no tenant', NULL); END IF;
    IF problem IS NULL AND (NOT input ? 'name' OR NOT input ? 'table' OR NOT input ? 'actions') THEN
        problem := 'name, table and actions are required';
    END IF;
    IF problem IS NOT NULL THEN RETURN fraise.observer_rule_result('invalid', problem, NULL); END IF;
    BEGIN
        INSERT INTO fraise.observer_rules (tenant_id, name, table_name, operations, condition, actions, enabled, columns)
        VALUES (tenant, input->>'name', input->>'table',
                coalesce((SELECT array_agg(o) FROM jsonb_array_elements_text(input->'operations') o),
                         '{INSERT,UPDATE,DELETE}'),
                coalesce(input->>'condition', ''), fraise.observer_public_actions(input->'actions'),
                coalesce((input->>'enabled')::boolean, true), fraise.observer_rule_columns(input))
        RETURNING id INTO rid;
        PERFORM fraise.observer_put_actions(rid, input->'actions');
    EXCEPTION
        WHEN unique_violation THEN
            RETURN fraise.observer_rule_result('conflict', 'a rule with this name exists', NULL);
        WHEN SQLSTATE 'FO001' THEN
            RETURN fraise.observer_rule_result('invalid', SQLERRM, NULL);
    END;
    RETURN fraise.observer_rule_result('ok', NULL, rid);
END $$;

CREATE OR REPLACE FUNCTION public.fn_update_observer_rule(rid uuid, input jsonb) RETURNS fraise.observer_rule_result
LANGUAGE plpgsql AS $$
DECLARE
    problem  text := coalesce(fraise.observer_rule_check(input), fraise.observer_rule_columns_check(input));
    found_id uuid;
    v_public jsonb;
BEGIN
    IF problem IS NOT NULL THEN RETURN fraise.observer_rule_result('invalid', problem, NULL); END IF;
    BEGIN
        IF input ? 'actions' THEN
            -- NULL when the tenant has no such rule: the update finds none.
            v_public := fraise.observer_put_actions(rid, input->'actions');
        END IF;
        UPDATE fraise.observer_rules r SET
            name       = coalesce(input->>'name', r.name),
            table_name = coalesce(input->>'table', r.table_name),
            operations = coalesce((SELECT array_agg(o) FROM jsonb_array_elements_text(input->'operations') o), r.operations),
            condition  = CASE WHEN input ? 'condition' THEN coalesce(input->>'condition', '') ELSE r.condition END,
            actions    = coalesce(v_public, r.actions),
            enabled    = coalesce((input->>'enabled')::boolean, r.enabled),
            columns    = coalesce(fraise.observer_rule_columns(input), r.columns),
            version    = r.version + 1,
            updated_at = now()
        WHERE r.id = rid
        RETURNING r.id INTO found_id;
    EXCEPTION
        WHEN unique_violation THEN
            RETURN fraise.observer_rule_result('conflict', 'a rule with this name exists', NULL);
        WHEN SQLSTATE 'FO001' THEN
            RETURN fraise.observer_rule_result('invalid', SQLERRM, NULL);
    END;
    IF found_id IS NULL THEN RETURN fraise.observer_rule_result('not_found', 'no such rule', NULL); END IF;
    RETURN fraise.observer_rule_result('ok', NULL, rid);
END $$;
