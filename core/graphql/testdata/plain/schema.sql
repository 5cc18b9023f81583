-- A plain PostgreSQL schema: tables of columns, no data jsonb anywhere.
CREATE TABLE authors (
    id      uuid PRIMARY KEY,
    name    text NOT NULL,
    born_on date
);
CREATE TABLE books (
    id         uuid PRIMARY KEY,
    title      text NOT NULL,
    page_count int,
    genres     text[] NOT NULL DEFAULT '{}',
    author_id  uuid REFERENCES authors (id)
);
COMMENT ON TABLE books IS 'A book of the library.';
COMMENT ON COLUMN books.page_count IS 'Pages, as printed.';
CREATE TABLE secrets (id uuid PRIMARY KEY, value text);
COMMENT ON TABLE secrets IS E'Not for GraphQL.\n@omit';
INSERT INTO authors VALUES ('a2000000-0000-4000-8000-000000000001', 'Ada Lovelace', '1815-12-10'),
                           ('a2000000-0000-4000-8000-000000000002', 'Katherine Johnson', '1918-08-26');
INSERT INTO books VALUES ('b2000000-0000-4000-8000-000000000001', 'Notes', 66, '{math,computing}', 'a2000000-0000-4000-8000-000000000001'),
                         ('b2000000-0000-4000-8000-000000000002', 'Hidden Figures', 368, '{history}', 'a2000000-0000-4000-8000-000000000002');
GRANT SELECT ON authors, books, secrets TO fraise_app;
