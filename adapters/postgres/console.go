package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
)

// Console reads what the console shows of a tenant (migration 0016): the
// decision log through a SECURITY DEFINER function that returns the
// tenant's rows only, persisted documents, observer rules and quotas
// through their row-level-secured tables and views, each in a
// tenant-scoped transaction.
type Console struct {
	db *DB
}

var (
	_ core.ConsoleStore  = (*Console)(nil)
	_ decisionlog.Reader = (*Console)(nil)
)

// NewConsole returns the console's reads over db.
func NewConsole(db *DB) *Console { return &Console{db: db} }

// queryJSON runs sql in tenant's transaction and decodes its one JSON
// value into v.
func (c *Console) queryJSON(ctx context.Context, op, tenant string, v any, sql string, args ...any) error {
	return c.db.InTenant(ctx, tenant, func(ctx context.Context, q core.Querier) error {
		b, err := q.QueryJSON(ctx, sql, args...)
		if err != nil {
			return err
		}
		if b == nil {
			return nil
		}
		if err := json.Unmarshal(b, v); err != nil {
			return core.E(op, core.CodeInternal, err)
		}
		return nil
	})
}

// Decisions implements decisionlog.Reader.
func (c *Console) Decisions(ctx context.Context, tenant string, f decisionlog.Filter) ([]decisionlog.Decision, error) {
	const op = "postgres.Console.Decisions"
	filter := map[string]any{"with_input": f.WithInput, "exclude_console": f.ExcludeConsole}
	for k, v := range map[string]string{"subject": f.Subject, "operation": f.Operation, "reason": f.Reason} {
		if v != "" {
			filter[k] = v
		}
	}
	if f.Allow != nil {
		filter["allow"] = *f.Allow
	}
	if !f.Since.IsZero() {
		filter["since"] = f.Since.UTC().Format(time.RFC3339Nano)
	}
	if !f.Until.IsZero() {
		filter["until"] = f.Until.UTC().Format(time.RFC3339Nano)
	}
	if f.Limit > 0 {
		filter["limit"] = f.Limit
	}
	fb, err := json.Marshal(filter)
	if err != nil {
		return nil, core.E(op, core.CodeInternal, err)
	}
	// console_decisions names the decision's id "id"; the rest is a
	// decisionRow, as RecordDecisions writes it.
	var rows []struct {
		decisionRow
		ID string `json:"id"`
	}
	if err := c.queryJSON(ctx, op, tenant, &rows,
		`select coalesce(jsonb_agg(d), '[]') from fraise.console_decisions($1::jsonb) d`, string(fb)); err != nil {
		return nil, err
	}
	out := make([]decisionlog.Decision, len(rows))
	for i, r := range rows {
		r.DecisionID = r.ID
		out[i] = r.decision()
	}
	return out, nil
}

// PersistedOperations implements core.ConsoleStore: the tenant's
// registered documents, then the trusted documents every tenant shares.
func (c *Console) PersistedOperations(ctx context.Context, tenant string) ([]core.PersistedOperation, error) {
	var rows []struct {
		Hash      string    `json:"hash"`
		Document  string    `json:"document"`
		CreatedAt time.Time `json:"created_at"`
	}
	if err := c.queryJSON(ctx, "postgres.Console.PersistedOperations", tenant, &rows, `select coalesce(jsonb_agg(x), '[]') from (
		(select hash, document, created_at from fraise.persisted_documents order by created_at desc limit 500)
		union all
		(select hash, document, created_at from fraise.trusted_documents order by created_at desc limit 500)) x`); err != nil {
		return nil, err
	}
	out := make([]core.PersistedOperation, len(rows))
	for i, r := range rows {
		out[i] = core.PersistedOperation{Hash: r.Hash, Document: r.Document, CreatedAt: r.CreatedAt}
	}
	return out, nil
}

// Rules implements core.ConsoleStore, through the rules' GraphQL read
// model, which leaves action secrets out.
func (c *Console) Rules(ctx context.Context, tenant string) ([]core.Rule, error) {
	var rows []core.Rule
	if err := c.queryJSON(ctx, "postgres.Console.Rules", tenant, &rows,
		`select coalesce(jsonb_agg(data || jsonb_build_object('tenant', tenant_id) order by data->>'name'), '[]') from public.v_observer_rule`); err != nil {
		return nil, err
	}
	return rows, nil
}

// Quota implements core.ConsoleStore, through the quota read model.
func (c *Console) Quota(ctx context.Context, tenant string) (core.TenantQuota, error) {
	var row struct {
		Tier   string `json:"tier"`
		Quotas []struct {
			Resource string `json:"resource"`
			Used     int64  `json:"used"`
			Limit    *int64 `json:"limit"`
		} `json:"quotas"`
	}
	if err := c.queryJSON(ctx, "postgres.Console.Quota", tenant, &row,
		`select data from public.v_tenant_quota`); err != nil {
		return core.TenantQuota{}, err
	}
	q := core.TenantQuota{Tier: row.Tier, Quotas: make([]core.QuotaUsage, len(row.Quotas))}
	if q.Tier == "" {
		q.Tier = "default" // a tenant without a row has the default tier
	}
	for i, u := range row.Quotas {
		lim := int64(-1)
		if u.Limit != nil {
			lim = *u.Limit
		}
		q.Quotas[i] = core.QuotaUsage{Resource: u.Resource, Used: u.Used, Limit: lim}
	}
	return q, nil
}

// Refusals implements core.ConsoleStore.
func (c *Console) Refusals(ctx context.Context, tenant string, since time.Time) ([]core.RefusalCount, error) {
	var rows []struct {
		Hour      time.Time `json:"hour"`
		RateLimit int64     `json:"ratelimit"`
		Admission int64     `json:"admission"`
	}
	if err := c.queryJSON(ctx, "postgres.Console.Refusals", tenant, &rows,
		`select coalesce(jsonb_agg(r), '[]') from fraise.console_refusals($1) r`, since.UTC()); err != nil {
		return nil, err
	}
	out := make([]core.RefusalCount, len(rows))
	for i, r := range rows {
		out[i] = core.RefusalCount{Hour: r.Hour, RateLimit: r.RateLimit, Admission: r.Admission}
	}
	return out, nil
}
