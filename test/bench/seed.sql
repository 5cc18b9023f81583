-- Seed data: per tenant 100 users and 5000 posts, half of them published,
-- then the projection filled in one statement and its triggers armed.
INSERT INTO blog.users (id, tenant_id, name, email)
SELECT gen_random_uuid(), t.id, 'user ' || i, 'user' || i || '@' || t.name || '.test'
FROM fraise.tenants t, generate_series(1, 100) i;

INSERT INTO blog.posts (tenant_id, author_id, title, body, status, published_at)
SELECT u.tenant_id, u.id, 'post ' || u.name || ' #' || i, repeat('Lorem ipsum dolor sit amet. ', 8),
       CASE WHEN i % 2 = 0 THEN 'published' ELSE 'draft' END,
       CASE WHEN i % 2 = 0 THEN timestamptz '2026-01-01' + (i * 3607 + length(u.name)) * interval '1 second' END
FROM blog.users u, generate_series(1, 50) i;

INSERT INTO public.tv_post (id, tenant_id, data) SELECT p.id, p.tenant_id, public.post_data(p) FROM blog.posts p;

CREATE TRIGGER tv_post_sync AFTER INSERT OR UPDATE ON blog.posts FOR EACH ROW EXECUTE FUNCTION public.tv_post_sync();
CREATE TRIGGER tv_post_sync AFTER UPDATE ON blog.users FOR EACH ROW EXECUTE FUNCTION public.tv_post_sync();

ANALYZE;
