-- The comparative benchmark's database: a blog of two tenants, written
-- once for both servers. PostGraphile reads the normalized tables of schema
-- blog (its idiomatic use); Fraise reads the table-backed projection
-- public.tv_post (id, tenant_id, data jsonb) that triggers keep in step
-- with them (the database-first CQRS way), and writes through
-- public.fn_create_post. Both insert into blog.posts, so both pay for the
-- projection's trigger on writes. Row-level security on fraise.tenant
-- applies to both: each server sets it per request in a transaction.
-- :app is the application role both servers connect as.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

INSERT INTO fraise.tenants (id, name) VALUES
    ('11111111-1111-4111-8111-111111111111', 'Acme'),
    ('22222222-2222-4222-8222-222222222222', 'Globex')
ON CONFLICT (id) DO NOTHING;

CREATE SCHEMA blog;

CREATE TABLE blog.users (
    id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL DEFAULT nullif(current_setting('fraise.tenant', true), '')::uuid REFERENCES fraise.tenants(id),
    name      text NOT NULL,
    email     text NOT NULL
);
CREATE INDEX ON blog.users (tenant_id);

CREATE TABLE blog.posts (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL DEFAULT nullif(current_setting('fraise.tenant', true), '')::uuid REFERENCES fraise.tenants(id),
    author_id    uuid NOT NULL REFERENCES blog.users(id),
    title        text NOT NULL,
    body         text NOT NULL,
    status       text NOT NULL DEFAULT 'draft',
    published_at timestamptz
);
CREATE INDEX ON blog.posts (author_id);
CREATE INDEX ON blog.posts (tenant_id, status, published_at DESC, id);

CREATE TABLE public.tv_post (
    id        uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    data      jsonb NOT NULL
);
-- The index the benchmark's read walks: the tenant (row-level security's
-- condition), then the order Fraise compiles orderBy publishedAt
-- DESC_NULLS_LAST to, so drafts (no publishedAt) sort after every published
-- post. The filter on status cannot be an index condition here: ->> is not
-- leakproof, so under row-level security PostgreSQL evaluates it only on
-- rows the policy let through. Walking the index in order and stopping at
-- the 50th match reads 50 rows instead of sorting the tenant's 5000.
CREATE INDEX ON public.tv_post (tenant_id, (data->>'publishedAt') DESC NULLS LAST, id);
-- Statistics on the filtered path, so the planner knows half the posts are
-- published and walks that index rather than sorting the whole tenant.
CREATE STATISTICS tv_post_status ON (data->>'status') FROM public.tv_post;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['blog.users', 'blog.posts', 'public.tv_post'] LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %s
            USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid)$p$, t);
    END LOOP;
END $$;

-- post_data is a post's JSON as Fraise serves it, the author nested.
CREATE FUNCTION public.post_data(p blog.posts) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', p.id, 'title', p.title, 'body', p.body, 'status', p.status,
        'publishedAt', to_char(p.published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'author', jsonb_build_object('id', u.id, 'name', u.name, 'email', u.email))
    FROM blog.users u WHERE u.id = p.author_id
$$;

CREATE FUNCTION public.tv_post_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'posts' THEN
        INSERT INTO public.tv_post (id, tenant_id, data) VALUES (NEW.id, NEW.tenant_id, public.post_data(NEW))
        ON CONFLICT (id) DO UPDATE SET data = excluded.data;
    ELSE
        UPDATE public.tv_post t SET data = public.post_data(p) FROM blog.posts p WHERE p.author_id = NEW.id AND t.id = p.id;
    END IF;
    RETURN NULL;
END $$;

-- The mutation result Fraise reads: succeeded, status, error_class and the
-- entity, as the engine's schema check requires.
CREATE TYPE public.bench_mutation_result AS (
    succeeded   boolean,
    status      text,
    error_class text,
    message     text,
    entity_id   uuid,
    entity      jsonb
);

CREATE FUNCTION public.fn_create_post(input jsonb) RETURNS public.bench_mutation_result LANGUAGE plpgsql AS $$
DECLARE
    p blog.posts;
BEGIN
    IF coalesce(input->>'title', '') = '' THEN
        RETURN (false, 'invalid', 'VALIDATION', 'title is required', NULL, NULL)::public.bench_mutation_result;
    END IF;
    BEGIN
        INSERT INTO blog.posts (author_id, title, body, status, published_at)
        VALUES ((input->>'authorId')::uuid, input->>'title', coalesce(input->>'body', ''),
                coalesce(input->>'status', 'draft'), (input->>'publishedAt')::timestamptz)
        RETURNING * INTO p;
    EXCEPTION WHEN foreign_key_violation THEN
        RETURN (false, 'failed', 'NOT_FOUND', 'no such author', NULL, NULL)::public.bench_mutation_result;
    END;
    RETURN (true, 'created', NULL, NULL, p.id, (SELECT data FROM public.tv_post WHERE id = p.id))::public.bench_mutation_result;
END $$;
