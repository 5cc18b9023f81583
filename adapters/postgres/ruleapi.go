package postgres

import (
	"context"
	"encoding/json"

	"github.com/fraise-dev/fraise/core"
)

var _ core.StoredRules = (*DB)(nil)

// StoredRule implements core.StoredRules through v_observer_rule, the
// rule API's read model (migration 0004), which leaves secrets out and
// shows only the transaction's tenant's rules.
func (db *DB) StoredRule(ctx context.Context, q core.Querier, id string) (json.RawMessage, error) {
	v, err := q.QueryJSON(ctx, `select v.data from public.v_observer_rule v where v.id::text = $1`, id)
	if err != nil || len(v) == 0 {
		return nil, err
	}
	return v, nil
}

// EnsureRule creates tenant's rule of rule's name, or updates the one of
// that name to rule (a JSON object as fn_create_observer_rule takes it),
// as the core's role in the tenant, through the functions the rule API's
// mutations call: so the database checks it as it checks one written
// through GraphQL. A rule the database refuses is an *core.Error with
// CodeInvalid carrying the function's status and message.
func (db *DB) EnsureRule(ctx context.Context, tenant string, rule json.RawMessage) error {
	const op = "postgres.EnsureRule"
	var r struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(rule, &r); err != nil || r.Name == "" {
		return core.Errorf(core.CodeInvalid, "the rule needs a name").WithOp(op)
	}
	return db.InTenant(ctx, tenant, func(ctx context.Context, q core.Querier) error {
		id, err := q.QueryJSON(ctx, `select to_jsonb(v.id::text) from public.v_observer_rule v where v.data->>'name' = $1`, r.Name)
		if err != nil {
			return err
		}
		var res []byte
		if id != nil {
			var s string
			_ = json.Unmarshal(id, &s)
			res, err = q.QueryJSON(ctx, `select jsonb_build_object('status', f.status, 'message', f.message) from public.fn_update_observer_rule($1::uuid, $2::jsonb) f`, s, string(rule))
		} else {
			res, err = q.QueryJSON(ctx, `select jsonb_build_object('status', f.status, 'message', f.message) from public.fn_create_observer_rule($1::jsonb) f`, string(rule))
		}
		if err != nil {
			return err
		}
		var out struct{ Status, Message string }
		if err := json.Unmarshal(res, &out); err != nil {
			return core.E(op, core.CodeInternal, err)
		}
		if out.Status != "ok" {
			return core.Errorf(core.CodeInvalid, "%s: %s", out.Status, out.Message).WithOp(op)
		}
		return nil
	})
}
