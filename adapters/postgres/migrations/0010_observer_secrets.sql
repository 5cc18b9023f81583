-- Observer secrets (security issue 13, defect 7a). A Slack incoming-webhook
-- URL is itself a credential, and so is a webhook URL with userinfo or a
-- token in it; so is a webhook's signing secret. Until now they lived in
-- fraise.observer_rules.actions, which the core's role reads and
-- v_observer_rule returned to every viewer of the tenant's rules. From
-- here on they live in fraise.observer_action_secrets, which no role but
-- this schema's owner can read: the core's role only reaches it through the
-- SECURITY DEFINER functions below, which write secrets and hand the
-- dispatcher its rules, and never return a secret to a caller.
-- observer_rules.actions keeps the public form of each action: the URL
-- redacted when it is a secret one, no signing secret, and two flags,
-- secretUrl and signed.

-- action_url_secret reports whether an action's URL is a credential: every
-- Slack URL; any URL that is not scheme://...; a URL with userinfo (an @
-- before the path); one whose query or fragment mentions a credential
-- (token, key, secret, sig, pass, pwd, auth, code, cred, session, in any
-- case) or holds a percent-encoding (which could hide such a name); and one
-- with a path segment of 24 characters or more (a token in the path, as
-- Discord's or Teams' webhooks have). core.ActionURLSecret is the same rule
-- in Go, for logs and dead letters; a test holds the two to each other.
CREATE FUNCTION fraise.action_url_secret(kind text, url text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT CASE
        WHEN url IS NULL THEN kind = 'slack'
        ELSE kind = 'slack'
          OR url !~ '^[A-Za-z][A-Za-z0-9+.-]*://'
          OR strpos(substring(url from '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)'), '@') > 0
          OR regexp_replace(url, '^[^?#]*', '') ~* '(token|key|secret|sig|pass|pwd|auth|code|cred|session|%)'
          OR coalesce(substring(url from '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^?#]*)'), '') ~ '/[^/]{24,}'
    END
$$;

-- redact_action_url returns what may be shown of an action's URL: the URL
-- itself when it is not a secret one; else scheme://host (userinfo
-- removed), the first path segment when it is shorter than 24 characters,
-- and /***: https://hooks.slack.com/services/***. A URL that is not
-- scheme://... at all is ***. core.RedactActionURL is the same in Go.
CREATE FUNCTION fraise.redact_action_url(kind text, url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT CASE
        WHEN url IS NULL THEN NULL
        WHEN NOT fraise.action_url_secret(kind, url) THEN url
        WHEN url !~ '^[A-Za-z][A-Za-z0-9+.-]*://' THEN '***'
        ELSE substring(url from '^([A-Za-z][A-Za-z0-9+.-]*://)')
          || regexp_replace(substring(url from '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)'), '^.*@', '')
          || coalesce('/' || substring(url from '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*/([^/?#]{1,23})(?:[/?#]|$)'), '')
          || '/***'
    END
$$;

-- The secret parts of actions, by rule and action index (0-based): the URL
-- when it is a secret one, the webhook's signing secret. Nothing is granted
-- on it: only the owner's functions below read or write it. Row-level
-- security is on (not forced: the owner's functions serve every tenant) so
-- that a grant added by mistake still shows a tenant nothing but its own.
CREATE TABLE fraise.observer_action_secrets (
    rule_id   uuid    NOT NULL REFERENCES fraise.observer_rules (id) ON DELETE CASCADE,
    tenant_id uuid    NOT NULL,
    action    integer NOT NULL CHECK (action BETWEEN 0 AND 9),
    url       text,
    secret    text,
    PRIMARY KEY (rule_id, action)
);
REVOKE ALL ON fraise.observer_action_secrets FROM PUBLIC;
ALTER TABLE fraise.observer_action_secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON fraise.observer_action_secrets
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);

-- observer_public_action is action a as the rule API shows it, given its
-- full URL and signing secret: url redacted, secret and password left out,
-- secretUrl and signed saying what is kept apart.
CREATE FUNCTION fraise.observer_public_action(a jsonb, full_url text, secret text) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
    SELECT (a - 'secret' - 'password' - 'url' - 'secretUrl' - 'signed')
        || CASE WHEN full_url IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('url', fraise.redact_action_url(a->>'kind', full_url)) END
        || jsonb_build_object('secretUrl', full_url IS NOT NULL AND fraise.action_url_secret(a->>'kind', full_url),
                              'signed', coalesce(secret, '') <> '')
$$;

-- observer_public_actions is a list of new actions as the rule API shows
-- them (nothing to keep from a stored rule).
CREATE FUNCTION fraise.observer_public_actions(actions jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
    SELECT coalesce(jsonb_agg(fraise.observer_public_action(x.a, x.a->>'url',
                                                            CASE WHEN jsonb_typeof(x.a->'secret') = 'string' THEN x.a->>'secret' END)
                              ORDER BY x.n), '[]')
    FROM jsonb_array_elements(actions) WITH ORDINALITY AS x(a, n)
$$;

-- observer_store_actions gives rule rid of tenant the actions input
-- (as fn_create/fn_update_observer_rule take them): it stores their secret
-- parts in observer_action_secrets and returns their public form, which the
-- caller stores in observer_rules.actions; NULL when the tenant has no rule
-- rid. An action may keep what the rule already holds without resending
-- it: a URL given as its redacted form (the rule API shows nothing else)
-- stands for the stored URL it redacts, and an action without a secret
-- keeps the signing secret of the stored action with the same kind and URL
-- (an empty secret removes it). The stored action at the same index is
-- preferred, then the first that matches. A URL ending in *** that redacts
-- no stored URL is refused (SQLSTATE FO001): it is a redacted form sent
-- for an action that does not exist, never a target.
CREATE FUNCTION fraise.observer_store_actions(rid uuid, tenant uuid, actions jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_cur    jsonb;
    v_stored jsonb;
    v_a      jsonb;
    v_n      integer;
    v_kind   text;
    v_url    text;
    v_secret text;
    v_match  record;
    v_out    jsonb := '[]';
BEGIN
    SELECT r.actions INTO v_cur FROM fraise.observer_rules r WHERE r.id = rid AND r.tenant_id = tenant;
    IF NOT FOUND OR tenant IS NULL THEN
        RETURN NULL;
    END IF;
    -- The stored actions with their secrets, before they are replaced.
    SELECT coalesce(jsonb_agg(jsonb_build_object('n', x.n - 1, 'kind', x.a->>'kind',
                                                 'url', coalesce(s.url, x.a->>'url'), 'secret', s.secret)
                              ORDER BY x.n), '[]')
    INTO v_stored
    FROM jsonb_array_elements(v_cur) WITH ORDINALITY AS x(a, n)
    LEFT JOIN fraise.observer_action_secrets s ON s.rule_id = rid AND s.action = x.n - 1;
    DELETE FROM fraise.observer_action_secrets s WHERE s.rule_id = rid;
    FOR v_a, v_n IN SELECT x.a, x.n - 1 FROM jsonb_array_elements(actions) WITH ORDINALITY AS x(a, n) LOOP
        v_kind := v_a->>'kind';
        v_url := v_a->>'url';
        SELECT st.e->>'url' AS url, st.e->>'secret' AS secret INTO v_match
        FROM jsonb_array_elements(v_stored) AS st(e)
        WHERE st.e->>'kind' = v_kind AND v_url IS NOT NULL
          AND (st.e->>'url' = v_url OR fraise.redact_action_url(v_kind, st.e->>'url') = v_url)
        ORDER BY (st.e->>'n')::int <> v_n, (st.e->>'n')::int
        LIMIT 1;
        IF v_match.url IS NOT NULL THEN
            v_url := v_match.url;
        ELSIF v_url LIKE '%***' THEN
            RAISE EXCEPTION 'actions[%]: url % is the redacted form of no URL of this rule: send the full URL', v_n, v_url
                USING ERRCODE = 'FO001';
        END IF;
        v_secret := CASE WHEN jsonb_typeof(v_a->'secret') = 'string' THEN v_a->>'secret' ELSE v_match.secret END;
        IF v_secret = '' THEN
            v_secret := NULL;
        END IF;
        IF (v_url IS NOT NULL AND fraise.action_url_secret(v_kind, v_url)) OR v_secret IS NOT NULL THEN
            INSERT INTO fraise.observer_action_secrets (rule_id, tenant_id, action, url, secret)
            VALUES (rid, tenant, v_n, CASE WHEN v_url IS NOT NULL AND fraise.action_url_secret(v_kind, v_url) THEN v_url END,
                    v_secret);
        END IF;
        v_out := v_out || jsonb_build_array(fraise.observer_public_action(v_a, v_url, v_secret));
    END LOOP;
    RETURN v_out;
END $$;

-- observer_put_actions is observer_store_actions for the current tenant:
-- what the rule functions, running as the core's role, call.
CREATE FUNCTION fraise.observer_put_actions(rid uuid, actions jsonb) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT fraise.observer_store_actions(rid, nullif(current_setting('fraise.tenant', true), '')::uuid, actions)
$$;
REVOKE ALL ON FUNCTION fraise.observer_store_actions(uuid, uuid, jsonb), fraise.observer_put_actions(uuid, jsonb) FROM PUBLIC;

-- The rules stored before this migration: their secrets move out of
-- actions. Row-level security is forced on observer_rules, which would
-- show the migrating owner no tenant's rules, and the actions_per_rule
-- quota trigger wants a tenant: both are set aside for the move (the
-- number of actions does not change).
ALTER TABLE fraise.observer_rules NO FORCE ROW LEVEL SECURITY;
ALTER TABLE fraise.observer_rules DISABLE TRIGGER fraise_quota_actions_per_rule;
UPDATE fraise.observer_rules r SET actions = fraise.observer_store_actions(r.id, r.tenant_id, r.actions);
ALTER TABLE fraise.observer_rules ENABLE TRIGGER fraise_quota_actions_per_rule;
ALTER TABLE fraise.observer_rules FORCE ROW LEVEL SECURITY;

-- v_observer_rule shows the public form; secret and password are still
-- left out, whatever a row holds.
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
           'createdAt', r.created_at, 'updatedAt', r.updated_at) AS data
FROM fraise.observer_rules r;

-- observer_rules_enabled hands the dispatcher every tenant's enabled rules
-- with their actions whole: the secret URLs and signing secrets put back.
CREATE OR REPLACE FUNCTION fraise.observer_rules_enabled()
RETURNS TABLE (id uuid, tenant_id uuid, name text, table_name text, operations text[], condition text,
               actions jsonb, version integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.id, r.tenant_id, r.name, r.table_name, r.operations, r.condition,
           (SELECT coalesce(jsonb_agg((x.a - 'secretUrl' - 'signed')
                                      || CASE WHEN s.url IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('url', s.url) END
                                      || CASE WHEN s.secret IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('secret', s.secret) END
                                      ORDER BY x.n), '[]')
            FROM jsonb_array_elements(r.actions) WITH ORDINALITY AS x(a, n)
            LEFT JOIN fraise.observer_action_secrets s ON s.rule_id = r.id AND s.action = x.n - 1),
           r.version
    FROM fraise.observer_rules r WHERE r.enabled ORDER BY r.tenant_id, r.name
$$;

-- fn_create_observer_rule and fn_update_observer_rule as in 0004, with the
-- actions' secrets stored apart. The public form is computed before the
-- insert, so a secret never lands in observer_rules even in a row version
-- the transaction replaces.
CREATE OR REPLACE FUNCTION public.fn_create_observer_rule(input jsonb) RETURNS fraise.observer_rule_result
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
    BEGIN
        INSERT INTO fraise.observer_rules (tenant_id, name, table_name, operations, condition, actions, enabled)
        VALUES (tenant, input->>'name', input->>'table',
                coalesce((SELECT array_agg(o) FROM jsonb_array_elements_text(input->'operations') o),
                         '{INSERT,UPDATE,DELETE}'),
                coalesce(input->>'condition', ''), fraise.observer_public_actions(input->'actions'),
                coalesce((input->>'enabled')::boolean, true))
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
    problem  text := fraise.observer_rule_check(input);
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

-- grant_observer_secrets lets the core's role store actions' secrets (and
-- only through observer_put_actions; the table itself stays unreadable).
CREATE FUNCTION fraise.grant_observer_secrets(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION fraise.observer_put_actions(uuid, jsonb) TO %I', role);
END $$;
