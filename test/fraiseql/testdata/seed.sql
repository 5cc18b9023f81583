-- Two tenants: Acme (blog and shop) and Globex (one of each), with fixed
-- ids so expected answers can name them.
INSERT INTO tb_user (id, identifier, tenant_id, email, name, bio, created_at) VALUES
    ('a1000000-0000-4000-8000-000000000001', 'alice', '11111111-1111-4111-8111-111111111111', 'alice@acme.test', 'Alice', 'Writes about rockets.', '2024-01-01T09:00:00Z'),
    ('a1000000-0000-4000-8000-000000000002', 'bob', '11111111-1111-4111-8111-111111111111', 'bob@acme.test', 'Bob', NULL, '2024-01-02T09:00:00Z'),
    ('a1000000-0000-4000-8000-000000000003', 'gina', '22222222-2222-4222-8222-222222222222', 'gina@globex.test', 'Gina', 'Globex blog.', '2024-01-03T09:00:00Z');
INSERT INTO tb_post (id, identifier, tenant_id, fk_user, title, content, tags, is_published, published_at, view_count, created_at) VALUES
    ('b1000000-0000-4000-8000-000000000001', 'rockets-for-beginners', '11111111-1111-4111-8111-111111111111', 1, 'Rockets for beginners', 'Start small: water rockets.', '{rockets,science}', true, '2024-02-01T10:00:00Z', 120, '2024-02-01T09:00:00Z'),
    ('b1000000-0000-4000-8000-000000000002', 'anvils-reviewed', '11111111-1111-4111-8111-111111111111', 2, 'Anvils reviewed', 'Heavy, but dependable.', '{anvils,review}', true, '2024-03-01T10:00:00Z', 45, '2024-03-01T09:00:00Z'),
    ('b1000000-0000-4000-8000-000000000003', 'draft-on-magnets', '11111111-1111-4111-8111-111111111111', 1, 'Draft on magnets', 'Not yet.', '{science}', false, NULL, 0, '2024-04-01T09:00:00Z'),
    ('b1000000-0000-4000-8000-000000000004', 'globex-news', '22222222-2222-4222-8222-222222222222', 3, 'Globex news', 'Quarterly results.', '{news}', true, '2024-02-15T10:00:00Z', 7, '2024-02-15T09:00:00Z');
INSERT INTO tb_comment (id, tenant_id, fk_post, fk_user, content, created_at) VALUES
    ('c1000000-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111', 1, 2, 'Great start!', '2024-02-02T10:00:00Z'),
    ('c1000000-0000-4000-8000-000000000002', '11111111-1111-4111-8111-111111111111', 1, 1, 'Thanks, Bob.', '2024-02-03T10:00:00Z');
SELECT app.sync_tv_post(ARRAY(SELECT id FROM tb_post));

INSERT INTO tb_category (id, identifier, name) VALUES
    ('d1000000-0000-4000-8000-000000000001', 'tools', 'Tools'),
    ('d1000000-0000-4000-8000-000000000002', 'explosives', 'Explosives');
INSERT INTO tb_product (id, identifier, tenant_id, fk_category, name, description, price, stock, tags, attributes, is_active) VALUES
    ('e1000000-0000-4000-8000-000000000001', 'ANV-1', '11111111-1111-4111-8111-111111111111', 1, 'Anvil', 'Drops well.', 99.50, 10, '{heavy,iron}', '{"weight_kg": 50, "color": "black"}', true),
    ('e1000000-0000-4000-8000-000000000002', 'TNT-1', '11111111-1111-4111-8111-111111111111', 2, 'Dynamite', 'Handle with care.', 12.00, 3, '{boom}', '{"color": "red"}', true),
    ('e1000000-0000-4000-8000-000000000003', 'ROC-1', '11111111-1111-4111-8111-111111111111', NULL, 'Rocket skates', NULL, 250.00, 0, '{fast}', '{}', false),
    ('e1000000-0000-4000-8000-000000000004', 'GLX-1', '22222222-2222-4222-8222-222222222222', 1, 'Globex wrench', 'Adjustable.', 20.00, 5, '{}', '{}', true);
INSERT INTO tb_customer (id, identifier, tenant_id, name, email) VALUES
    ('f1000000-0000-4000-8000-000000000001', 'coyote', '11111111-1111-4111-8111-111111111111', 'Wile E. Coyote', 'wile@acme.test'),
    ('f1000000-0000-4000-8000-000000000002', 'hank', '22222222-2222-4222-8222-222222222222', 'Hank Scorpio', 'hank@globex.test');
INSERT INTO tb_order (id, identifier, tenant_id, fk_customer, status, total, created_at) VALUES
    ('01000000-0000-4000-8000-000000000001', 'ORD-1', '11111111-1111-4111-8111-111111111111', 1, 'shipped', 123.50, '2024-05-01T09:00:00Z');
INSERT INTO tb_order_item (tenant_id, fk_order, fk_product, quantity, unit_price) VALUES
    ('11111111-1111-4111-8111-111111111111', 1, 1, 1, 99.50),
    ('11111111-1111-4111-8111-111111111111', 1, 2, 2, 12.00);
