-- FraiseQL's blog example, written for Fraise's tests from its documented
-- conventions: trinity tables (pk_ for joins, id public, identifier a
-- slug), fk_ foreign keys, v_ views of (id, tenant_id, data) composing
-- other views' data, a tv_ table-backed projection, fn_ mutations
-- returning app.mutation_response, row-level security on app.tenant_id.

CREATE TABLE tb_user (
    pk_user    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    identifier text NOT NULL,
    tenant_id  uuid NOT NULL,
    email      text NOT NULL,
    name       text NOT NULL,
    bio        text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, identifier)
);
COMMENT ON TABLE tb_user IS 'A person who writes and comments.';

CREATE TABLE tb_post (
    pk_post      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    identifier   text NOT NULL,
    tenant_id    uuid NOT NULL,
    fk_user      bigint NOT NULL REFERENCES tb_user (pk_user),
    title        text NOT NULL,
    content      text NOT NULL,
    tags         text[] NOT NULL DEFAULT '{}',
    is_published boolean NOT NULL DEFAULT false,
    published_at timestamptz,
    view_count   int NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, identifier)
);
CREATE INDEX tb_post_fk_user_idx ON tb_post (fk_user);

CREATE TABLE tb_comment (
    pk_comment bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    identifier text,
    tenant_id  uuid NOT NULL,
    fk_post    bigint NOT NULL REFERENCES tb_post (pk_post) ON DELETE CASCADE,
    fk_user    bigint NOT NULL REFERENCES tb_user (pk_user),
    content    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tb_comment_fk_post_idx ON tb_comment (fk_post);

ALTER TABLE tb_user ENABLE ROW LEVEL SECURITY;
ALTER TABLE tb_post ENABLE ROW LEVEL SECURITY;
ALTER TABLE tb_comment ENABLE ROW LEVEL SECURITY;
ALTER TABLE tb_user FORCE ROW LEVEL SECURITY;
ALTER TABLE tb_post FORCE ROW LEVEL SECURITY;
ALTER TABLE tb_comment FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON tb_user USING (tenant_id = app.current_tenant()) WITH CHECK (tenant_id = app.current_tenant());
CREATE POLICY tenant ON tb_post USING (tenant_id = app.current_tenant()) WITH CHECK (tenant_id = app.current_tenant());
CREATE POLICY tenant ON tb_comment USING (tenant_id = app.current_tenant()) WITH CHECK (tenant_id = app.current_tenant());

CREATE VIEW v_user WITH (security_invoker = true) AS
SELECT u.id, u.tenant_id,
       jsonb_build_object('id', u.id, 'identifier', u.identifier, 'email', u.email, 'name', u.name,
                          'bio', u.bio, 'created_at', u.created_at) AS data
FROM tb_user u;
COMMENT ON VIEW v_user IS 'A person who writes and comments.';

CREATE VIEW v_comment WITH (security_invoker = true) AS
SELECT c.id, c.tenant_id, c.fk_post,
       jsonb_build_object('id', c.id, 'content', c.content, 'created_at', c.created_at, 'author', vu.data) AS data
FROM tb_comment c
JOIN tb_user u ON u.pk_user = c.fk_user
JOIN v_user vu ON vu.id = u.id;
COMMENT ON VIEW v_comment IS 'A comment on a post.';

CREATE VIEW v_post WITH (security_invoker = true) AS
SELECT p.id, p.tenant_id, p.is_published,
       jsonb_build_object('id', p.id, 'identifier', p.identifier, 'title', p.title, 'content', p.content,
                          'tags', p.tags, 'is_published', p.is_published, 'published_at', p.published_at,
                          'view_count', p.view_count, 'created_at', p.created_at,
                          'author', vu.data,
                          'comments', coalesce((SELECT jsonb_agg(vc.data ORDER BY c.created_at, c.pk_comment)
                                                FROM v_comment vc JOIN tb_comment c ON c.id = vc.id
                                                WHERE vc.fk_post = p.pk_post), '[]'::jsonb)) AS data
FROM tb_post p
JOIN tb_user u ON u.pk_user = p.fk_user
JOIN v_user vu ON vu.id = u.id;
COMMENT ON VIEW v_post IS 'A blog post, with its author and comments.';

-- The table-backed projection of v_post: reads of posts scan stored jsonb.
CREATE TABLE tv_post (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    is_published boolean NOT NULL,
    data         jsonb NOT NULL
);
ALTER TABLE tv_post ENABLE ROW LEVEL SECURITY;
ALTER TABLE tv_post FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON tv_post USING (tenant_id = app.current_tenant());
COMMENT ON TABLE tv_post IS 'A blog post, with its author and comments.';

-- Security definer: callers read tv_post; only this writes it, from v_post.
CREATE FUNCTION app.sync_tv_post(ids uuid[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, app AS $$
    DELETE FROM public.tv_post t WHERE t.id = ANY(ids);
    INSERT INTO public.tv_post (id, tenant_id, is_published, data)
    SELECT v.id, v.tenant_id, v.is_published, v.data FROM public.v_post v WHERE v.id = ANY(ids);
$$;

-- fn_create_post(input jsonb): keys as the views' data, snake_case.
CREATE FUNCTION fn_create_post(input jsonb) RETURNS app.mutation_response
LANGUAGE plpgsql AS $$
DECLARE
    v_author bigint;
    v_id     uuid;
    v_slug   text;
BEGIN
    IF coalesce(btrim(input->>'title'), '') = '' THEN
        RETURN app.err('validation', 'title is required', 'CreatePostError', jsonb_build_object('field', 'title'));
    END IF;
    SELECT pk_user INTO v_author FROM tb_user WHERE id = (input->>'author_id')::uuid;
    IF v_author IS NULL THEN
        RETURN app.err('not_found', 'no such author', 'CreatePostError', jsonb_build_object('field', 'author_id'));
    END IF;
    v_slug := lower(btrim(regexp_replace(input->>'title', '[^a-zA-Z0-9]+', '-', 'g'), '-'));
    IF EXISTS (SELECT 1 FROM tb_post WHERE identifier = v_slug) THEN
        RETURN app.err('conflict', 'a post with this title exists', 'CreatePostError', jsonb_build_object('field', 'title', 'identifier', v_slug));
    END IF;
    INSERT INTO tb_post (identifier, tenant_id, fk_user, title, content, tags)
    VALUES (v_slug, app.current_tenant(), v_author, input->>'title', coalesce(input->>'content', ''),
            coalesce(ARRAY(SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(input->'tags') = 'array' THEN input->'tags' END)), '{}'))
    RETURNING id INTO v_id;
    PERFORM app.sync_tv_post(ARRAY[v_id]);
    RETURN app.ok('Post', v_id, (SELECT data FROM v_post WHERE id = v_id), ARRAY['title', 'content', 'tags'], NULL, 201::smallint);
END
$$;

-- fn_publish_post(p_id uuid): positional arguments.
CREATE FUNCTION fn_publish_post(p_id uuid) RETURNS app.mutation_response
LANGUAGE plpgsql AS $$
DECLARE
    v_done boolean;
BEGIN
    SELECT is_published INTO v_done FROM tb_post WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN app.err('not_found', 'no such post', 'PublishPostError', jsonb_build_object('field', 'id'));
    END IF;
    IF NOT v_done THEN
        UPDATE tb_post SET is_published = true, published_at = '2024-06-01T12:00:00Z' WHERE id = p_id;
        PERFORM app.sync_tv_post(ARRAY[p_id]);
    END IF;
    RETURN ROW(true, NOT v_done, NULL, CASE WHEN v_done THEN 'already_published' END, 200, NULL, p_id, 'Post',
               (SELECT data FROM v_post WHERE id = p_id), CASE WHEN v_done THEN '{}'::text[] ELSE ARRAY['is_published', 'published_at'] END,
               NULL, NULL, NULL)::app.mutation_response;
END
$$;

-- fn_create_comment(input jsonb): a cascade, the post whose comments changed.
CREATE FUNCTION fn_create_comment(input jsonb) RETURNS app.mutation_response
LANGUAGE plpgsql AS $$
DECLARE
    r_post  tb_post%ROWTYPE;
    v_pk_user  bigint;
    v_id    uuid;
BEGIN
    IF coalesce(btrim(input->>'content'), '') = '' THEN
        RETURN app.err('validation', 'content is required', 'CreateCommentError', jsonb_build_object('field', 'content'));
    END IF;
    SELECT * INTO r_post FROM tb_post WHERE id = (input->>'post_id')::uuid;
    SELECT pk_user INTO v_pk_user FROM tb_user WHERE id = (input->>'author_id')::uuid;
    IF r_post.pk_post IS NULL OR v_pk_user IS NULL THEN
        RETURN app.err('not_found', 'no such post or author', 'CreateCommentError', NULL);
    END IF;
    INSERT INTO tb_comment (tenant_id, fk_post, fk_user, content)
    VALUES (app.current_tenant(), r_post.pk_post, v_pk_user, input->>'content')
    RETURNING id INTO v_id;
    PERFORM app.sync_tv_post(ARRAY[r_post.id]);
    RETURN app.ok('Comment', v_id, (SELECT data FROM v_comment WHERE id = v_id), ARRAY['content'],
                  jsonb_build_object('updated', jsonb_build_array(jsonb_build_object(
                      '__typename', 'Post', 'id', r_post.id, 'operation', 'UPDATED',
                      'entity', (SELECT data FROM v_post WHERE id = r_post.id))),
                      'deleted', '[]'::jsonb, 'invalidations', '[]'::jsonb,
                      'metadata', jsonb_build_object('affected_count', 1)),
                  201::smallint);
END
$$;
