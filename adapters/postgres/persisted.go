package postgres

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/core"
)

// PersistedOptions tunes a PersistedDocuments.
type PersistedOptions struct {
	// CacheBytes bounds the documents kept in process, counted by their
	// length (0: 16 MiB). Documents never change for a hash, so a cached
	// one is never stale; a miss is never cached, because the automatic
	// persisted query protocol sends the hash alone again right after
	// registering it, possibly to another replica or to extauthz.
	CacheBytes int
	// MaxPerTenant bounds the documents a tenant may register (0: 10000),
	// so a tenant cannot fill the database by registering endless
	// variations. Past it Put fails with CodeTooLarge; the core still runs
	// the document it was given, and the client keeps sending it whole.
	MaxPerTenant int
}

// PersistedDocuments stores persisted GraphQL documents in
// fraise.persisted_documents (per tenant, row-level security) and
// fraise.trusted_documents (global, read-only to the application role),
// migration 0007, with an in-process LRU cache in front.
type PersistedDocuments struct {
	db    *DB
	cache *docCache
	max   int
}

var _ core.PersistedDocuments = (*PersistedDocuments)(nil)

// NewPersistedDocuments returns the store over db's pool.
func NewPersistedDocuments(db *DB, o PersistedOptions) *PersistedDocuments {
	if o.CacheBytes <= 0 {
		o.CacheBytes = 16 << 20
	}
	if o.MaxPerTenant <= 0 {
		o.MaxPerTenant = 10000
	}
	return &PersistedDocuments{db: db, cache: newDocCache(o.CacheBytes), max: o.MaxPerTenant}
}

// Get implements core.PersistedDocuments. A tenant that is not a UUID
// (none) finds only trusted documents.
func (s *PersistedDocuments) Get(ctx context.Context, tenant, hash string) (string, bool, error) {
	const op = "postgres.PersistedDocuments.Get"
	if !isHash(hash) {
		return "", false, nil
	}
	k := docKey{tenant: tenant, hash: hash}
	if doc, ok := s.cache.get(k); ok {
		return doc, true, nil
	}
	if !isUUID(tenant) {
		tenant = ""
	}
	// One round trip: the pipeline is one implicit transaction, so the
	// tenant setting row-level security reads is local to it.
	b := &pgx.Batch{}
	b.Queue("select set_config('fraise.tenant', $1, true)", tenant)
	b.Queue(`select document from fraise.trusted_documents where hash = $1
		union all
		select document from fraise.persisted_documents
		where tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid and hash = $1
		limit 1`, hash)
	br, err := s.db.sendBatch(ctx, b)
	defer func() { _ = br.Close() }() // sendBatch returns br, to close, with its error
	if err != nil {
		return "", false, mapError(op, err)
	}
	var doc string
	err = br.QueryRow().Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, mapError(op, err)
	}
	if err := br.Close(); err != nil {
		return "", false, mapError(op, err)
	}
	s.cache.put(k, doc)
	return doc, true, nil
}

// Put implements core.PersistedDocuments.
func (s *PersistedDocuments) Put(ctx context.Context, tenant, hash, document string) error {
	const op = "postgres.PersistedDocuments.Put"
	if !isUUID(tenant) {
		return core.Errorf(core.CodeInvalid, "tenant must be a UUID").WithOp(op)
	}
	if core.DocumentHash(document) != hash {
		return core.Errorf(core.CodeInvalid, "the hash is not the document's SHA-256").WithOp(op)
	}
	k := docKey{tenant: tenant, hash: hash}
	if _, ok := s.cache.get(k); ok {
		return nil
	}
	// The count reads the primary key's index; concurrent registrations
	// may overshoot the bound by a few, which is all it needs to be.
	b := &pgx.Batch{}
	b.Queue("select set_config('fraise.tenant', $1, true)", tenant)
	b.Queue(`with ins as (
			insert into fraise.persisted_documents (tenant_id, hash, document)
			select $1::uuid, $2, $3
			where (select count(*) from fraise.persisted_documents where tenant_id = $1::uuid) < $4
			on conflict do nothing
			returning 1)
		select exists (select 1 from ins)
		    or exists (select 1 from fraise.persisted_documents where tenant_id = $1::uuid and hash = $2)`,
		tenant, hash, document, s.max)
	br, err := s.db.sendBatch(ctx, b)
	defer func() { _ = br.Close() }() // sendBatch returns br, to close, with its error
	if err != nil {
		return mapError(op, err)
	}
	var stored bool
	if err := br.QueryRow().Scan(&stored); err != nil {
		return mapError(op, err)
	}
	if err := br.Close(); err != nil {
		return mapError(op, err)
	}
	if !stored {
		return core.Errorf(core.CodeTooLarge, "the tenant has registered %d documents, the most it may", s.max).WithOp(op)
	}
	s.cache.put(k, document)
	return nil
}

// LoadTrustedDocuments makes docs (hash to document, hashes checked by
// the caller and again by the table) the set of trusted documents, in one
// transaction as the schema owner at adminURL: new ones are added and ones
// no longer in docs removed. Processes that cached a removed document keep
// it until they restart; the core in trusted-documents mode runs only its
// own manifest anyway.
func LoadTrustedDocuments(ctx context.Context, adminURL string, docs map[string]string) error {
	hashes := make([]string, 0, len(docs))
	for h := range docs {
		hashes = append(hashes, h)
	}
	sort.Strings(hashes)
	texts := make([]string, len(hashes))
	for i, h := range hashes {
		texts[i] = docs[h]
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("trusted documents: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "delete from fraise.trusted_documents where hash <> all($1)", hashes); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `insert into fraise.trusted_documents (hash, document)
			select * from unnest($1::text[], $2::text[]) on conflict (hash) do nothing`, hashes, texts)
		return err
	})
	if err != nil {
		return fmt.Errorf("trusted documents: %w", err)
	}
	return nil
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

type docKey struct{ tenant, hash string }

type docEntry struct {
	key docKey
	doc string
}

// docCache is an LRU of documents bounded by their total length.
type docCache struct {
	mu    sync.Mutex
	max   int
	size  int
	order *list.List // front: most recently used
	items map[docKey]*list.Element
}

func newDocCache(maxBytes int) *docCache {
	return &docCache{max: maxBytes, order: list.New(), items: map[docKey]*list.Element{}}
}

func (c *docCache) get(k docKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return "", false
	}
	c.order.MoveToFront(el)
	return el.Value.(*docEntry).doc, true
}

func (c *docCache) put(k docKey, doc string) {
	if len(doc) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.order.PushFront(&docEntry{key: k, doc: doc})
	c.size += len(doc)
	for c.size > c.max {
		el := c.order.Back()
		e := el.Value.(*docEntry)
		c.order.Remove(el)
		delete(c.items, e.key)
		c.size -= len(e.doc)
	}
}
