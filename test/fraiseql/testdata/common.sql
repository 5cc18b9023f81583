-- FraiseQL's shared types, as its documentation defines them: the
-- mutation response every mutation function returns (13 columns), its
-- error classes, and the older 8-column response still found in
-- databases written before it. Written for Fraise's tests from FraiseQL's
-- documented conventions (v2.15-2.18).
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA IF NOT EXISTS app;

CREATE TYPE app.mutation_error_class AS ENUM (
    'validation', 'conflict', 'not_found', 'unauthorized', 'forbidden',
    'internal', 'transaction_failed', 'timeout', 'rate_limited', 'service_unavailable');

CREATE TYPE app.mutation_response AS (
    succeeded      boolean,
    state_changed  boolean,
    error_class    app.mutation_error_class,
    status_detail  text,
    http_status    smallint,
    message        text,
    entity_id      uuid,
    entity_type    text,
    entity         jsonb,
    updated_fields text[],
    cascade        jsonb,
    error_detail   jsonb,
    metadata       jsonb);

-- The older shape: the outcome is a status string ("created",
-- "not_found:order", "failed:...").
CREATE TYPE public.mutation_response AS (
    status         text,
    message        text,
    entity_id      text,
    entity_type    text,
    entity         jsonb,
    updated_fields text[],
    cascade        jsonb,
    metadata       jsonb);

-- Builders, so functions state outcomes in one line each.
CREATE FUNCTION app.ok(entity_type text, entity_id uuid, entity jsonb, updated text[], cascade jsonb DEFAULT NULL, http smallint DEFAULT 200)
RETURNS app.mutation_response LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(true, true, NULL, NULL, http, NULL, entity_id, entity_type, entity, updated, cascade, NULL, NULL)::app.mutation_response
$$;
CREATE FUNCTION app.err(class app.mutation_error_class, message text, error_type text, detail jsonb DEFAULT NULL)
RETURNS app.mutation_response LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(false, false, class, NULL,
               CASE class WHEN 'validation' THEN 422 WHEN 'conflict' THEN 409 WHEN 'not_found' THEN 404 ELSE 500 END,
               message, NULL, error_type, NULL, NULL, NULL, detail, NULL)::app.mutation_response
$$;

-- Row-level security reads the tenant FraiseQL sets per transaction.
CREATE FUNCTION app.current_tenant() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('app.tenant_id', true), '')::uuid
$$;
