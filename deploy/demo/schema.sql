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
CREATE OR REPLACE VIEW public.v_user WITH (security_invoker = true) AS
SELECT u.id, u.tenant_id,
       jsonb_build_object('id', u.id, 'name', u.name, 'email', u.email, 'createdAt', u.created_at) AS data
FROM public.users u;

CREATE OR REPLACE VIEW public.v_post WITH (security_invoker = true) AS
SELECT p.id, p.tenant_id,
       jsonb_build_object('id', p.id, 'title', p.title, 'body', p.body, 'publishedAt', p.published_at,
                          'author', jsonb_build_object('id', u.id, 'name', u.name, 'email', u.email)) AS data
FROM public.posts p
JOIN public.users u ON u.id = p.author_id;
