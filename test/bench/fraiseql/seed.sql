-- The benchmark's rows on FraiseQL's example database (test/fraiseql, whose
-- own seed is a handful of rows): 50 authors and 5,000 posts per tenant,
-- every other one published, a minute apart, and the indexes a deployment
-- would add for the benchmark's read (published posts, newest first): on the
-- projection tv_post for Fraise and FraiseQL, which read its data, and on
-- tb_post for PostGraphile, which reads the tables. Run as the database's
-- owner, after test/fraiseql's Apply.
INSERT INTO tb_user (identifier, tenant_id, email, name)
SELECT 'bench-user-' || t.n || '-' || i, t.id, 'user' || t.n || '-' || i || '@bench.test', 'Bench User ' || i
FROM (VALUES (1, '11111111-1111-4111-8111-111111111111'::uuid), (2, '22222222-2222-4222-8222-222222222222'::uuid)) t (n, id),
     generate_series(1, 50) i;

INSERT INTO tb_post (identifier, tenant_id, fk_user, title, content, tags, is_published, published_at, view_count)
SELECT 'bench-post-' || i, u.tenant_id, u.pk_user, 'Bench post ' || i, 'A post the benchmark seeded.', '{bench}',
       i % 2 = 0, CASE WHEN i % 2 = 0 THEN timestamptz '2024-01-01T00:00:00Z' + i * interval '1 minute' END, i % 100
FROM generate_series(1, 10000) i
CROSS JOIN LATERAL (SELECT pk_user, tenant_id FROM tb_user WHERE identifier LIKE 'bench-user-%'
                    ORDER BY pk_user OFFSET i % 100 LIMIT 1) u;

SELECT app.sync_tv_post(ARRAY(SELECT id FROM tb_post WHERE identifier LIKE 'bench-post-%'));

CREATE INDEX tv_post_bench_feed_idx ON tv_post (tenant_id, is_published, (data->>'published_at') DESC);
-- FraiseQL reads the filter and the order from data alone, whatever
-- native columns exist: WHERE (data->>'is_published')::boolean = $1 ORDER BY
-- (data->>'published_at')::timestamptz DESC, id. Its filter gets an index of
-- its own; its order cannot have one (text to timestamptz is not immutable),
-- so it sorts every published post of the tenant per request.
CREATE INDEX tv_post_bench_fraiseql_idx ON tv_post (tenant_id, ((data->>'is_published')::boolean));
CREATE INDEX tb_post_bench_feed_idx ON tb_post (tenant_id, is_published, published_at DESC);
ANALYZE;

-- For PostGraphile, which exposes schemas public and app (fn_create_post
-- returns app.mutation_response) and names both response types
-- MutationResponse: the older shape gets a name of its own. Fraise reads
-- no comment on a composite type; FraiseQL reads none of the database's.
COMMENT ON TYPE public.mutation_response IS E'@name LegacyMutationResponse';
