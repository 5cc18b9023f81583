-- The demo application: users and posts of two tenants, isolated by
-- row-level security, read through views of (id, tenant_id, data jsonb).
-- Idempotent: `fraise migrate --demo` may run it again.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE IF NOT EXISTS public.users (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL REFERENCES fraise.tenants(id),
    name       text NOT NULL,
    email      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS users_tenant_idx ON public.users (tenant_id);

CREATE TABLE IF NOT EXISTS public.posts (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES fraise.tenants(id),
    author_id    uuid NOT NULL REFERENCES public.users(id),
    title        text NOT NULL,
    body         text NOT NULL,
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS posts_tenant_idx ON public.posts (tenant_id);
ALTER TABLE public.posts ADD COLUMN IF NOT EXISTS tags text[] NOT NULL DEFAULT '{}';
ALTER TABLE public.posts ADD COLUMN IF NOT EXISTS reading_minutes int;
ALTER TABLE public.posts ADD COLUMN IF NOT EXISTS internal_note text;

-- FORCE applies the policies to the tables' owner too; the core's role is
-- not the owner, but a policy that only holds for some roles is a trap.
ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.users FORCE ROW LEVEL SECURITY;
ALTER TABLE public.posts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.posts FORCE ROW LEVEL SECURITY;

-- An unset fraise.tenant matches no row: nullif turns '' into NULL.
DROP POLICY IF EXISTS tenant_isolation ON public.users;
CREATE POLICY tenant_isolation ON public.users
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);
DROP POLICY IF EXISTS tenant_isolation ON public.posts;
CREATE POLICY tenant_isolation ON public.posts
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);

-- security_invoker: the views run with the caller's rights, so the
-- policies above apply to the core's role reading through them.
-- Views are replaced whole: their data shapes grew after the first demo.
DROP VIEW IF EXISTS public.v_user, public.v_post;
CREATE VIEW public.v_user WITH (security_invoker = true) AS
SELECT u.id, u.tenant_id,
       jsonb_build_object('id', u.id, 'name', u.name, 'email', u.email, 'createdAt', u.created_at,
                          'posts', coalesce((SELECT jsonb_agg(jsonb_build_object('id', p.id, 'title', p.title) ORDER BY p.published_at, p.id)
                                             FROM public.posts p WHERE p.author_id = u.id), '[]'::jsonb)) AS data
FROM public.users u;

-- Nested objects (author, stats) and arrays (tags) are composed here, so
-- a read of posts with their authors is one scan of this view.
CREATE VIEW public.v_post WITH (security_invoker = true) AS
SELECT p.id, p.tenant_id,
       jsonb_build_object('id', p.id, 'title', p.title, 'body', p.body, 'publishedAt', p.published_at,
                          'tags', to_jsonb(p.tags), 'internalNote', p.internal_note,
                          'stats', jsonb_build_object('readingMinutes', p.reading_minutes, 'words',
                                                      coalesce(array_length(regexp_split_to_array(btrim(p.body), '\s+'), 1), 0)),
                          'author', jsonb_build_object('id', u.id, 'name', u.name, 'email', u.email)) AS data
FROM public.posts p
JOIN public.users u ON u.id = p.author_id;

-- tv_post is the table-backed projection of v_post (database-first CQRS:
-- the write side's triggers keep the read side current). Reads filter and
-- sort on stored jsonb, which expression indexes serve, instead of
-- composing every row's JSON first.
CREATE TABLE IF NOT EXISTS public.tv_post (
    id        uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    data      jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS tv_post_published_idx ON public.tv_post (tenant_id, (data->>'publishedAt'));
ALTER TABLE public.tv_post ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tv_post FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON public.tv_post;
CREATE POLICY tenant_isolation ON public.tv_post
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);

-- Security definer: the core's role only reads tv_post; the projection is
-- written by its owner, from v_post, for the rows the write touched.
CREATE OR REPLACE FUNCTION public.refresh_tv_post(ids uuid[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DELETE FROM public.tv_post t WHERE t.id = ANY(ids) AND NOT EXISTS (SELECT 1 FROM public.posts p WHERE p.id = t.id);
    INSERT INTO public.tv_post (id, tenant_id, data)
    SELECT v.id, v.tenant_id, v.data FROM public.v_post v WHERE v.id = ANY(ids)
    ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, data = excluded.data;
$$;

CREATE OR REPLACE FUNCTION public.tv_post_from_posts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM public.refresh_tv_post(ARRAY[OLD.id]);
    ELSE
        PERFORM public.refresh_tv_post(ARRAY[NEW.id]);
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS tv_post_refresh ON public.posts;
CREATE TRIGGER tv_post_refresh AFTER INSERT OR UPDATE OR DELETE ON public.posts
    FOR EACH ROW EXECUTE FUNCTION public.tv_post_from_posts();

-- An author's name or email is part of each of their posts' data.
CREATE OR REPLACE FUNCTION public.tv_post_from_users() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM public.refresh_tv_post(ARRAY(SELECT p.id FROM public.posts p WHERE p.author_id = NEW.id));
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS tv_post_refresh ON public.users;
CREATE TRIGGER tv_post_refresh AFTER UPDATE ON public.users
    FOR EACH ROW EXECUTE FUNCTION public.tv_post_from_users();

-- Backfill, for databases that had posts before tv_post existed.
SELECT public.refresh_tv_post(ARRAY(SELECT id FROM public.posts));

-- The demo's mutation: fn_<name>(input jsonb) returning
-- fraise.mutation_result. It runs as the caller (security invoker), so
-- row-level security decides which authors exist and checks the insert.
CREATE OR REPLACE FUNCTION public.fn_create_post(input jsonb) RETURNS fraise.mutation_result
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    author uuid;
    new_id uuid;
BEGIN
    IF coalesce(btrim(input->>'title'), '') = '' THEN
        RETURN ROW(false, 'invalid', 'validation', 'title is required', NULL, NULL)::fraise.mutation_result;
    END IF;
    IF coalesce(input->>'authorId', '') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RETURN ROW(false, 'not_found', 'not_found', 'no such author', NULL, NULL)::fraise.mutation_result;
    END IF;
    SELECT id INTO author FROM public.users WHERE id = (input->>'authorId')::uuid;
    IF author IS NULL THEN
        RETURN ROW(false, 'not_found', 'not_found', 'no such author', NULL, NULL)::fraise.mutation_result;
    END IF;
    INSERT INTO public.posts (tenant_id, author_id, title, body, published_at, tags, reading_minutes)
    VALUES (nullif(current_setting('fraise.tenant', true), '')::uuid, author, input->>'title', coalesce(input->>'body', ''), now(),
            coalesce(ARRAY(SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(input->'tags') = 'array' THEN input->'tags' END)), '{}'),
            (input->>'readingMinutes')::int)
    RETURNING id INTO new_id;
    RETURN ROW(true, 'created', NULL, NULL, new_id, (SELECT data FROM public.v_post WHERE id = new_id))::fraise.mutation_result;
END
$$;

-- Smart comments: `fraise schema generate` reads them, so the schema it
-- generates from this database is deploy/demo/schema.graphql (a test
-- diffs them). Text lines are descriptions; @ lines refine (docs/schema.md,
-- "Generating the schema").
COMMENT ON VIEW public.v_user IS E'A person of a tenant, read from v_user (the default view name).\n'
    '@omit connection\n'
    '@field email "Masked (a***@acme.test) unless the principal holds read:User.email." @mask(kind: EMAIL, scope: "read:User.email")\n'
    '@field posts "Composed by the view: the user''s posts, oldest first."\n'
    '@type posts PostSummary "A post as its author''s list shows it."';
COMMENT ON VIEW public.v_post IS E'A blog post, read from tv_post: the table v_post''s rows are kept in by triggers.\n'
    '@type stats Stats "Figures about a post, a nested JSON object."\n'
    '@type author Author "A post''s author, composed into the post''s data by v_post."\n'
    '@field author.email @mask(kind: EMAIL, scope: "read:User.email")\n'
    '@field internalNote "Only for editors." @auth(scope: "read:Post.internalNote")\n'
    '@add "The JSON path stats.readingMinutes, bound with @field." minutes: Int @field(path: "stats.readingMinutes")';
COMMENT ON FUNCTION public.fn_create_post(jsonb) IS E'Calls fn_create_post(input jsonb).\n'
    '@input title: String!\n'
    '@input authorId: ID!\n'
    '@input tags: [String!]\n'
    '@success "The post was created."\n'
    '@error "The post was not created; errorClass says why (validation, not_found)."';
