-- Persisted GraphQL documents, shared by every core replica and extauthz.
--
-- A document is named by the lower-case hex SHA-256 of its text, and the
-- table checks it: no row can hold a document under another hash, whoever
-- writes it. Documents never change for a hash, so readers cache them.
--
-- Automatic persisted queries are per tenant: a tenant registers a document
-- by sending it with its hash and later sends the hash alone. A tenant
-- sees only its own registrations (row-level security), so it cannot tell
-- by probing hashes which operations another tenant runs; a document with
-- literal values in it (an e-mail, an id) would otherwise leak that
-- someone queried them. The application role may read and insert its
-- tenant's rows and nothing else: no update, no delete.
CREATE TABLE IF NOT EXISTS fraise.persisted_documents (
    tenant_id  uuid NOT NULL,
    hash       text NOT NULL,
    document   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, hash),
    CONSTRAINT persisted_documents_hash CHECK (hash = encode(sha256(convert_to(document, 'UTF8')), 'hex')),
    CONSTRAINT persisted_documents_size CHECK (octet_length(document) <= 1048576)
);

ALTER TABLE fraise.persisted_documents ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS persisted_documents_tenant ON fraise.persisted_documents;
CREATE POLICY persisted_documents_tenant ON fraise.persisted_documents
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);

-- Trusted documents are global: the operator registers them (`fraise
-- migrate` loads core.trusted_documents as the schema owner), every tenant
-- may run them, and they say nothing about any tenant. The application role
-- only reads them.
CREATE TABLE IF NOT EXISTS fraise.trusted_documents (
    hash       text PRIMARY KEY,
    document   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT trusted_documents_hash CHECK (hash = encode(sha256(convert_to(document, 'UTF8')), 'hex'))
);

-- Granted to PUBLIC as 0003's functions are: reaching the tables needs
-- USAGE on schema fraise, which `fraise migrate` grants only to the
-- application role.
GRANT SELECT, INSERT ON fraise.persisted_documents TO PUBLIC;
GRANT SELECT ON fraise.trusted_documents TO PUBLIC;
