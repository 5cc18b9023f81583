package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/apikey"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
)

// APIKeys stores API keys in fraise.api_keys (migration 0003). extauthz
// uses Get and TouchLastUsed as the application role, through SECURITY
// DEFINER functions; Create, List and Revoke are for `fraise apikey`, which
// connects as the schema owner.
type APIKeys struct {
	db *DB
}

var _ apikey.Store = (*APIKeys)(nil)

// NewAPIKeys returns the store over db's pool.
func NewAPIKeys(db *DB) *APIKeys { return &APIKeys{db: db} }

const apiKeyColumns = `id, tenant_id::text, name, roles, scopes, secret_hash, created_by, created_at, expires_at, revoked_at, last_used_at`

// Create implements apikey.Store.
func (s *APIKeys) Create(ctx context.Context, k apikey.Key) error {
	const op = "postgres.APIKeys.Create"
	if !isUUID(k.Tenant) {
		return core.Errorf(core.CodeInvalid, "tenant must be a UUID").WithOp(op)
	}
	_, err := s.db.exec(ctx, `insert into fraise.api_keys
		(id, tenant_id, name, roles, scopes, secret_hash, created_by, created_at, expires_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		k.ID, k.Tenant, k.Name, nonNil(k.Roles), nonNil(k.Scopes), k.Hash, k.CreatedBy, k.CreatedAt, k.ExpiresAt)
	if err != nil {
		return mapError(op, err)
	}
	return nil
}

// Get implements apikey.Store.
func (s *APIKeys) Get(ctx context.Context, id string) (apikey.Key, error) {
	const op = "postgres.APIKeys.Get"
	rows, err := s.db.query(ctx, `select `+apiKeyColumns+` from fraise.api_key_get($1)`, id)
	if err != nil {
		return apikey.Key{}, mapError(op, err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, scanAPIKey)
	if errors.Is(err, pgx.ErrNoRows) {
		return apikey.Key{}, core.Errorf(core.CodeNotFound, "no such API key").WithOp(op)
	}
	if err != nil {
		return apikey.Key{}, mapError(op, err)
	}
	return k, nil
}

// List implements apikey.Store.
func (s *APIKeys) List(ctx context.Context, tenant string) ([]apikey.Key, error) {
	const op = "postgres.APIKeys.List"
	if tenant != "" && !isUUID(tenant) {
		return nil, core.Errorf(core.CodeInvalid, "tenant must be a UUID").WithOp(op)
	}
	rows, err := s.db.query(ctx, `select `+apiKeyColumns+` from fraise.api_keys
		where $1 = '' or tenant_id::text = $1 order by created_at desc, id`, tenant)
	if err != nil {
		return nil, mapError(op, err)
	}
	keys, err := pgx.CollectRows(rows, scanAPIKey)
	if err != nil {
		return nil, mapError(op, err)
	}
	return keys, nil
}

// Revoke implements apikey.Store.
func (s *APIKeys) Revoke(ctx context.Context, id string, at time.Time) error {
	const op = "postgres.APIKeys.Revoke"
	tag, err := s.db.exec(ctx, `update fraise.api_keys set revoked_at = $2 where id = $1 and revoked_at is null`, id, at)
	if err != nil {
		return mapError(op, err)
	}
	if tag.RowsAffected() == 0 {
		return core.Errorf(core.CodeNotFound, "no such unrevoked API key").WithOp(op)
	}
	return nil
}

// TouchLastUsed implements apikey.Store with one statement per batch.
func (s *APIKeys) TouchLastUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	ids := make([]string, 0, len(used))
	ats := make([]time.Time, 0, len(used))
	for id, at := range used {
		ids = append(ids, id)
		ats = append(ats, at)
	}
	if _, err := s.db.exec(ctx, `select fraise.api_key_touch($1, $2)`, ids, ats); err != nil {
		return mapError("postgres.APIKeys.TouchLastUsed", err)
	}
	return nil
}

func scanAPIKey(row pgx.CollectableRow) (apikey.Key, error) {
	var k apikey.Key
	var revoked, used *time.Time
	err := row.Scan(&k.ID, &k.Tenant, &k.Name, &k.Roles, &k.Scopes, &k.Hash, &k.CreatedBy,
		&k.CreatedAt, &k.ExpiresAt, &revoked, &used)
	if revoked != nil {
		k.RevokedAt = *revoked
	}
	if used != nil {
		k.LastUsedAt = *used
	}
	return k, err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Decisions appends authorization decisions to fraise.authz_decisions
// (migration 0003) through a SECURITY DEFINER function, so the role
// extauthz connects as cannot read or change the audit log.
type Decisions struct {
	db *DB
}

var _ decisionlog.Store = (*Decisions)(nil)

// NewDecisions returns the audit log over db's pool.
func NewDecisions(db *DB) *Decisions { return &Decisions{db: db} }

type decisionRow struct {
	DecisionID     string    `json:"decision_id"`
	RequestID      string    `json:"request_id"`
	DecidedAt      time.Time `json:"decided_at"`
	Subject        string    `json:"subject"`
	TenantID       *string   `json:"tenant_id"`
	Kind           string    `json:"kind"`
	Operation      string    `json:"operation"`
	OperationName  string    `json:"operation_name"`
	Allow          bool      `json:"allow"`
	Status         int       `json:"status"`
	Reason         string    `json:"reason"`
	PolicyRevision string    `json:"policy_revision"`
	LatencyUS      int64     `json:"latency_us"`
	Method         string    `json:"method"`
	Path           string    `json:"path"`
	TraceID        string    `json:"trace_id"`
	// Input is the policy's input, a JSON document kept as is.
	Input json.RawMessage `json:"input,omitempty"`
}

// decision is the row as a decisionlog.Decision: a null tenant is "", a
// null input nil.
func (r decisionRow) decision() decisionlog.Decision {
	d := decisionlog.Decision{
		ID: r.DecisionID, RequestID: r.RequestID, At: r.DecidedAt, Subject: r.Subject, Kind: core.PrincipalKind(r.Kind),
		Operation: r.Operation, OperationName: r.OperationName, Allow: r.Allow, Status: r.Status, Reason: r.Reason,
		PolicyRevision: r.PolicyRevision, Latency: time.Duration(r.LatencyUS) * time.Microsecond,
		Method: r.Method, Path: r.Path, TraceID: r.TraceID,
	}
	if r.TenantID != nil {
		d.Tenant = *r.TenantID
	}
	if len(r.Input) > 0 && string(r.Input) != "null" {
		d.Input = r.Input
	}
	return d
}

// RecordDecisions implements decisionlog.Store in one statement. A tenant
// that is not a UUID (a policy that let one through) is stored as null.
func (s *Decisions) RecordDecisions(ctx context.Context, ds []decisionlog.Decision) error {
	if len(ds) == 0 {
		return nil
	}
	rows := make([]decisionRow, len(ds))
	for i, d := range ds {
		r := decisionRow{
			DecisionID: d.ID, RequestID: d.RequestID, DecidedAt: d.At, Subject: d.Subject,
			Kind: string(d.Kind), Operation: d.Operation, OperationName: d.OperationName, Allow: d.Allow,
			Status: d.Status, Reason: d.Reason, PolicyRevision: d.PolicyRevision, LatencyUS: d.Latency.Microseconds(),
			Method: d.Method, Path: d.Path, TraceID: d.TraceID,
		}
		if json.Valid(d.Input) {
			r.Input = d.Input
		}
		if isUUID(d.Tenant) {
			t := d.Tenant
			r.TenantID = &t
		}
		rows[i] = r
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return core.E("postgres.Decisions.RecordDecisions", core.CodeInternal, err)
	}
	if _, err := s.db.exec(ctx, `select fraise.authz_decisions_record($1::jsonb)`, string(b)); err != nil {
		return mapError("postgres.Decisions.RecordDecisions", err)
	}
	return nil
}
