-- A small database in FraiseQL's conventions, for the engine's
-- compatibility tests: trinity tables (pk_*, id, identifier), views of
-- (id, data) with snake_case keys, one without tenant_id, row-level
-- security reading app.tenant_id, and mutation functions returning
-- app.mutation_response (13 columns), the older 8-column shape, with
-- positional arguments and with one jsonb.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA app;
CREATE TYPE app.mutation_error_class AS ENUM ('validation', 'conflict', 'not_found', 'unauthorized', 'forbidden',
    'internal', 'transaction_failed', 'timeout', 'rate_limited', 'service_unavailable');
CREATE TYPE app.mutation_response AS (
    succeeded boolean, state_changed boolean, error_class app.mutation_error_class, status_detail text,
    http_status smallint, message text, entity_id uuid, entity_type text, entity jsonb, updated_fields text[],
    cascade jsonb, error_detail jsonb, metadata jsonb);
CREATE TYPE app.legacy_mutation_response AS (
    status text, message text, entity_id text, entity_type text, entity jsonb, updated_fields text[],
    cascade jsonb, metadata jsonb);

CREATE TABLE tb_author (
    pk_author  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    identifier text NOT NULL UNIQUE,
    tenant_id  uuid NOT NULL,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT '2024-01-01T00:00:00Z'
);
CREATE TABLE tb_note (
    pk_note    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    identifier text NOT NULL UNIQUE,
    tenant_id  uuid NOT NULL,
    fk_author  bigint NOT NULL REFERENCES tb_author (pk_author),
    title      text NOT NULL,
    rating     int,
    created_at timestamptz NOT NULL DEFAULT '2024-01-02T00:00:00Z'
);
ALTER TABLE tb_author ENABLE ROW LEVEL SECURITY;
ALTER TABLE tb_author FORCE ROW LEVEL SECURITY;
ALTER TABLE tb_note ENABLE ROW LEVEL SECURITY;
ALTER TABLE tb_note FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON tb_author USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY tenant ON tb_note USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- No tenant_id: row-level security on the table does the isolation.
CREATE VIEW v_author WITH (security_invoker = true) AS
SELECT a.id, jsonb_build_object('id', a.id, 'identifier', a.identifier, 'name', a.name, 'created_at', a.created_at) AS data
FROM tb_author a;

-- Native columns beside data: filters on rating compare the column.
CREATE VIEW v_note WITH (security_invoker = true) AS
SELECT n.id, n.tenant_id, n.pk_note, n.rating,
       jsonb_build_object('id', n.id, 'identifier', n.identifier, 'title', n.title, 'rating', n.rating,
                          'created_at', n.created_at, 'author', va.data) AS data
FROM tb_note n JOIN tb_author a ON a.pk_author = n.fk_author JOIN v_author va ON va.id = a.id;

-- Positional arguments, app.mutation_response, errors as data.
CREATE FUNCTION fn_create_note(p_title text, p_rating int, p_author_id uuid, p_tenant_id uuid)
RETURNS app.mutation_response LANGUAGE plpgsql AS $$
DECLARE
    author bigint;
    new_id uuid;
    r app.mutation_response;
BEGIN
    IF coalesce(btrim(p_title), '') = '' THEN
        r.succeeded := false; r.state_changed := false; r.error_class := 'validation'; r.http_status := 422;
        r.message := 'title is required'; r.entity_type := 'ValidationError';
        r.error_detail := jsonb_build_object('field', 'title', 'constraint', 'required');
        RETURN r;
    END IF;
    SELECT pk_author INTO author FROM tb_author WHERE id = p_author_id;
    IF author IS NULL THEN
        r.succeeded := false; r.state_changed := false; r.error_class := 'not_found'; r.http_status := 404;
        r.message := 'no such author'; r.entity_type := 'NotFoundError';
        r.error_detail := jsonb_build_object('resource', 'Author');
        RETURN r;
    END IF;
    INSERT INTO tb_note (identifier, tenant_id, fk_author, title, rating)
    VALUES (lower(regexp_replace(p_title, '[^a-zA-Z0-9]+', '-', 'g')), p_tenant_id, author, p_title, p_rating)
    RETURNING id INTO new_id;
    r.succeeded := true; r.state_changed := true; r.http_status := 201; r.message := 'created';
    r.entity_id := new_id; r.entity_type := 'Note';
    r.entity := (SELECT data FROM v_note WHERE id = new_id);
    r.updated_fields := ARRAY['title', 'rating'];
    r.cascade := jsonb_build_object('updated', jsonb_build_array(jsonb_build_object('__typename', 'Author', 'id', p_author_id, 'operation', 'UPDATED')));
    RETURN r;
END
$$;

-- One jsonb argument, the older 8-column shape.
CREATE FUNCTION fn_rename_author(input jsonb)
RETURNS app.legacy_mutation_response LANGUAGE plpgsql AS $$
DECLARE
    r app.legacy_mutation_response;
BEGIN
    UPDATE tb_author SET name = input->>'name' WHERE id = (input->>'id')::uuid;
    IF NOT FOUND THEN
        r.status := 'not_found:author'; r.message := 'no such author';
        r.metadata := jsonb_build_object('resource', 'Author');
        RETURN r;
    END IF;
    r.status := 'updated'; r.message := 'renamed'; r.entity_id := input->>'id'; r.entity_type := 'Author';
    r.entity := (SELECT data FROM v_author WHERE id = (input->>'id')::uuid);
    r.updated_fields := ARRAY['name'];
    RETURN r;
END
$$;

INSERT INTO tb_author (id, identifier, tenant_id, name) VALUES
    ('a0000000-0000-4000-8000-000000000001', 'ada', '11111111-1111-4111-8111-111111111111', 'Ada'),
    ('a0000000-0000-4000-8000-000000000002', 'grace', '11111111-1111-4111-8111-111111111111', 'Grace'),
    ('a0000000-0000-4000-8000-000000000003', 'hedy', '22222222-2222-4222-8222-222222222222', 'Hedy');
INSERT INTO tb_note (id, identifier, tenant_id, fk_author, title, rating) VALUES
    ('b0000000-0000-4000-8000-000000000001', 'engines', '11111111-1111-4111-8111-111111111111', 1, 'Engines', 5),
    ('b0000000-0000-4000-8000-000000000002', 'compilers', '11111111-1111-4111-8111-111111111111', 2, 'Compilers', 3),
    ('b0000000-0000-4000-8000-000000000003', 'radio', '22222222-2222-4222-8222-222222222222', 3, 'Radio', 4);

GRANT USAGE ON SCHEMA app TO fraise_app;
GRANT SELECT ON tb_author, tb_note, v_author, v_note TO fraise_app;
GRANT INSERT ON tb_note TO fraise_app;
GRANT UPDATE ON tb_author TO fraise_app;
