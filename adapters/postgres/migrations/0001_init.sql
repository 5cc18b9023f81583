-- Fraise's own schema and the role the core connects as.
CREATE SCHEMA IF NOT EXISTS fraise;

CREATE TABLE IF NOT EXISTS fraise.tenants (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    tier       text NOT NULL DEFAULT 'default',
    created_at timestamptz NOT NULL DEFAULT now()
);
