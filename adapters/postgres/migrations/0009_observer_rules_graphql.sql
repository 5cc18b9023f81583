-- Observer rules through the GraphQL engine. The engine calls a mutation's
-- function as f(input jsonb) and reads fraise.mutation_result (0002); the
-- rule functions of 0004 take typed arguments and return
-- fraise.observer_rule_result, which the CLI and tests use as they are. So
-- these wrappers adapt them rather than change them: they unpack the
-- engine's one jsonb argument and map the result.

-- observer_rule_mutation maps a rule function's result: status ok is a
-- success reported as done (created, updated, ...); any other status is the
-- error class. plpgsql, so the rule function it is given runs exactly once
-- (an inlined SQL function could evaluate its argument per reference).
CREATE FUNCTION fraise.observer_rule_mutation(r fraise.observer_rule_result, done text)
RETURNS fraise.mutation_result
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN ROW(r.status = 'ok',
               CASE WHEN r.status = 'ok' THEN done ELSE r.status END,
               CASE WHEN r.status = 'ok' THEN NULL ELSE r.status END,
               r.message, r.id, r.data)::fraise.mutation_result;
END $$;

-- graphql_create_observer_rule backs createObserverRule(input): input is
-- the rule, as fn_create_observer_rule takes it.
CREATE FUNCTION fraise.graphql_create_observer_rule(input jsonb) RETURNS fraise.mutation_result
LANGUAGE plpgsql AS $$
BEGIN
    RETURN fraise.observer_rule_mutation(public.fn_create_observer_rule(input), 'created');
END $$;

-- graphql_update_observer_rule backs updateObserverRule(id, input): the
-- engine passes both arguments as {"id": ..., "input": {...}}.
CREATE FUNCTION fraise.graphql_update_observer_rule(input jsonb) RETURNS fraise.mutation_result
LANGUAGE plpgsql AS $$
BEGIN
    RETURN fraise.observer_rule_mutation(
        public.fn_update_observer_rule((input->>'id')::uuid, coalesce(input->'input', '{}')), 'updated');
END $$;

-- graphql_enable_observer_rule, graphql_disable_observer_rule and
-- graphql_delete_observer_rule back the mutations of one argument, id.
CREATE FUNCTION fraise.graphql_enable_observer_rule(input jsonb) RETURNS fraise.mutation_result
LANGUAGE plpgsql AS $$
BEGIN
    RETURN fraise.observer_rule_mutation(public.fn_enable_observer_rule((input->>'id')::uuid), 'enabled');
END $$;

CREATE FUNCTION fraise.graphql_disable_observer_rule(input jsonb) RETURNS fraise.mutation_result
LANGUAGE plpgsql AS $$
BEGIN
    RETURN fraise.observer_rule_mutation(public.fn_disable_observer_rule((input->>'id')::uuid), 'disabled');
END $$;

CREATE FUNCTION fraise.graphql_delete_observer_rule(input jsonb) RETURNS fraise.mutation_result
LANGUAGE plpgsql AS $$
BEGIN
    RETURN fraise.observer_rule_mutation(public.fn_delete_observer_rule((input->>'id')::uuid), 'deleted');
END $$;

REVOKE ALL ON FUNCTION fraise.graphql_create_observer_rule(jsonb), fraise.graphql_update_observer_rule(jsonb),
    fraise.graphql_enable_observer_rule(jsonb), fraise.graphql_disable_observer_rule(jsonb),
    fraise.graphql_delete_observer_rule(jsonb) FROM PUBLIC;

-- grant_observer_graphql lets the core's role call the wrappers; Migrate
-- calls every fraise.grant_* function with the application role.
CREATE FUNCTION fraise.grant_observer_graphql(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION fraise.graphql_create_observer_rule(jsonb), '
                   'fraise.graphql_update_observer_rule(jsonb), fraise.graphql_enable_observer_rule(jsonb), '
                   'fraise.graphql_disable_observer_rule(jsonb), fraise.graphql_delete_observer_rule(jsonb) TO %I', role);
END $$;
