-- FraiseQL's e-commerce example, written for Fraise's tests from its
-- documented conventions: a global catalog of categories (a view without
-- tenant_id), tenant-scoped products, customers and orders, an order
-- composing its customer and its items, and mutations in both response
-- shapes: fn_create_order (app.mutation_response, errors as data,
-- cascade) and fn_cancel_order (the older 8-column shape).

CREATE TABLE tb_category (
    pk_category bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    identifier  text NOT NULL UNIQUE,
    name        text NOT NULL
);

CREATE TABLE tb_product (
    pk_product  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    identifier  text NOT NULL,
    tenant_id   uuid NOT NULL,
    fk_category bigint REFERENCES tb_category (pk_category),
    name        text NOT NULL,
    description text,
    price       numeric(10, 2) NOT NULL,
    stock       int NOT NULL,
    tags        text[] NOT NULL DEFAULT '{}',
    attributes  jsonb NOT NULL DEFAULT '{}',
    is_active   boolean NOT NULL DEFAULT true,
    UNIQUE (tenant_id, identifier)
);

CREATE TABLE tb_customer (
    pk_customer bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    identifier  text NOT NULL,
    tenant_id   uuid NOT NULL,
    name        text NOT NULL,
    email       text NOT NULL,
    UNIQUE (tenant_id, identifier)
);

CREATE TABLE tb_order (
    pk_order    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    identifier  text NOT NULL,
    tenant_id   uuid NOT NULL,
    fk_customer bigint NOT NULL REFERENCES tb_customer (pk_customer),
    status      text NOT NULL DEFAULT 'pending',
    total       numeric(12, 2) NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, identifier)
);

CREATE TABLE tb_order_item (
    pk_order_item bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL,
    fk_order      bigint NOT NULL REFERENCES tb_order (pk_order) ON DELETE CASCADE,
    fk_product    bigint NOT NULL REFERENCES tb_product (pk_product),
    quantity      int NOT NULL CHECK (quantity > 0),
    unit_price    numeric(10, 2) NOT NULL
);

ALTER TABLE tb_product ENABLE ROW LEVEL SECURITY;
ALTER TABLE tb_customer ENABLE ROW LEVEL SECURITY;
ALTER TABLE tb_order ENABLE ROW LEVEL SECURITY;
ALTER TABLE tb_order_item ENABLE ROW LEVEL SECURITY;
ALTER TABLE tb_product FORCE ROW LEVEL SECURITY;
ALTER TABLE tb_customer FORCE ROW LEVEL SECURITY;
ALTER TABLE tb_order FORCE ROW LEVEL SECURITY;
ALTER TABLE tb_order_item FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON tb_product USING (tenant_id = app.current_tenant()) WITH CHECK (tenant_id = app.current_tenant());
CREATE POLICY tenant ON tb_customer USING (tenant_id = app.current_tenant()) WITH CHECK (tenant_id = app.current_tenant());
CREATE POLICY tenant ON tb_order USING (tenant_id = app.current_tenant()) WITH CHECK (tenant_id = app.current_tenant());
CREATE POLICY tenant ON tb_order_item USING (tenant_id = app.current_tenant()) WITH CHECK (tenant_id = app.current_tenant());

-- The catalog is global: no tenant_id, no row-level security.
CREATE VIEW v_category AS
SELECT c.id, jsonb_build_object('id', c.id, 'identifier', c.identifier, 'name', c.name) AS data
FROM tb_category c;
COMMENT ON VIEW v_category IS 'A product category, shared by every tenant.';

-- price and stock are native columns too: filters on them use indexes.
CREATE VIEW v_product WITH (security_invoker = true) AS
SELECT p.id, p.tenant_id, p.price, p.stock,
       jsonb_build_object('id', p.id, 'identifier', p.identifier, 'name', p.name, 'description', p.description,
                          'price', p.price, 'stock', p.stock, 'tags', p.tags, 'attributes', p.attributes,
                          'is_active', p.is_active, 'category', vc.data) AS data
FROM tb_product p
LEFT JOIN tb_category c ON c.pk_category = p.fk_category
LEFT JOIN v_category vc ON vc.id = c.id;
COMMENT ON VIEW v_product IS 'A product a tenant sells.';

CREATE VIEW v_customer WITH (security_invoker = true) AS
SELECT c.id, c.tenant_id,
       jsonb_build_object('id', c.id, 'identifier', c.identifier, 'name', c.name, 'email', c.email) AS data
FROM tb_customer c;
COMMENT ON VIEW v_customer IS E'A customer.\n@omit';

CREATE VIEW v_order WITH (security_invoker = true) AS
SELECT o.id, o.tenant_id, o.status,
       jsonb_build_object('id', o.id, 'identifier', o.identifier, 'status', o.status, 'total', o.total,
                          'created_at', o.created_at, 'customer', vc.data,
                          'items', coalesce((SELECT jsonb_agg(jsonb_build_object('quantity', i.quantity, 'unit_price', i.unit_price,
                                                                                 'product', jsonb_build_object('id', p.id, 'identifier', p.identifier, 'name', p.name))
                                                              ORDER BY i.pk_order_item)
                                             FROM tb_order_item i JOIN tb_product p ON p.pk_product = i.fk_product
                                             WHERE i.fk_order = o.pk_order), '[]'::jsonb)) AS data
FROM tb_order o
JOIN tb_customer cu ON cu.pk_customer = o.fk_customer
JOIN v_customer vc ON vc.id = cu.id;
COMMENT ON VIEW v_order IS 'An order, with its customer and items.';

-- fn_create_order(input jsonb): {customer_id, items: [{product_id, quantity}]}.
CREATE FUNCTION fn_create_order(input jsonb) RETURNS app.mutation_response
LANGUAGE plpgsql AS $$
DECLARE
    v_customer bigint;
    v_pk_order    bigint;
    v_id       uuid;
    v_item     jsonb;
    r_product  tb_product%ROWTYPE;
    v_updated  jsonb := '[]'::jsonb;
BEGIN
    IF jsonb_typeof(input->'items') IS DISTINCT FROM 'array' OR jsonb_array_length(input->'items') = 0 THEN
        RETURN app.err('validation', 'an order needs items', 'CreateOrderError', jsonb_build_object('field', 'items'));
    END IF;
    SELECT pk_customer INTO v_customer FROM tb_customer WHERE id = (input->>'customer_id')::uuid;
    IF v_customer IS NULL THEN
        RETURN app.err('not_found', 'no such customer', 'CreateOrderError', jsonb_build_object('field', 'customer_id'));
    END IF;
    INSERT INTO tb_order (identifier, tenant_id, fk_customer)
    VALUES ('ORD-' || (SELECT count(*) + 1001 FROM tb_order), app.current_tenant(), v_customer)
    RETURNING pk_order, id INTO v_pk_order, v_id;
    FOR v_item IN SELECT jsonb_array_elements(input->'items') LOOP
        SELECT * INTO r_product FROM tb_product WHERE id = (v_item->>'product_id')::uuid FOR UPDATE;
        IF r_product.pk_product IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = 'no such product';
        END IF;
        IF r_product.stock < (v_item->>'quantity')::int THEN
            -- Nothing may stay changed on failure: undo the order so far.
            DELETE FROM tb_order WHERE pk_order = v_pk_order;
            RETURN app.err('conflict', 'not enough stock', 'CreateOrderError',
                           jsonb_build_object('field', 'items', 'product', r_product.identifier, 'available', r_product.stock));
        END IF;
        INSERT INTO tb_order_item (tenant_id, fk_order, fk_product, quantity, unit_price)
        VALUES (app.current_tenant(), v_pk_order, r_product.pk_product, (v_item->>'quantity')::int, r_product.price);
        UPDATE tb_product SET stock = stock - (v_item->>'quantity')::int WHERE pk_product = r_product.pk_product;
        v_updated := v_updated || jsonb_build_array(jsonb_build_object('__typename', 'Product', 'id', r_product.id, 'operation', 'UPDATED',
                                                                       'entity', (SELECT data FROM v_product WHERE id = r_product.id)));
    END LOOP;
    UPDATE tb_order SET total = (SELECT sum(quantity * unit_price) FROM tb_order_item WHERE fk_order = v_pk_order) WHERE pk_order = v_pk_order;
    RETURN app.ok('Order', v_id, (SELECT data FROM v_order WHERE id = v_id), ARRAY['status', 'total', 'items'],
                  jsonb_build_object('updated', v_updated, 'deleted', '[]'::jsonb, 'invalidations', '[]'::jsonb), 201::smallint);
END
$$;

-- fn_cancel_order(input jsonb): the older 8-column response.
CREATE FUNCTION fn_cancel_order(input jsonb) RETURNS public.mutation_response
LANGUAGE plpgsql AS $$
DECLARE
    r_order tb_order%ROWTYPE;
BEGIN
    SELECT * INTO r_order FROM tb_order WHERE id = (input->>'id')::uuid;
    IF r_order.pk_order IS NULL THEN
        RETURN ROW('not_found:order', 'no such order', NULL, 'Order', NULL, NULL, NULL,
                   jsonb_build_object('field', 'id'))::public.mutation_response;
    END IF;
    IF r_order.status = 'cancelled' THEN
        RETURN ROW('conflict:already_cancelled', 'the order is cancelled already', r_order.id::text, 'Order', NULL, NULL, NULL,
                   jsonb_build_object('field', 'id', 'status', r_order.status))::public.mutation_response;
    END IF;
    UPDATE tb_product p SET stock = p.stock + i.quantity FROM tb_order_item i WHERE i.fk_order = r_order.pk_order AND p.pk_product = i.fk_product;
    UPDATE tb_order SET status = 'cancelled' WHERE pk_order = r_order.pk_order;
    RETURN ROW('updated', 'order cancelled', r_order.id::text, 'Order', (SELECT data FROM v_order WHERE id = r_order.id),
               ARRAY['status'], NULL, NULL)::public.mutation_response;
END
$$;
