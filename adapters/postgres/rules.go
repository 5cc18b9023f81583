package postgres

import (
	"context"
	"encoding/json"

	"github.com/fraise-dev/fraise/core"
)

// EnabledRules implements core.RuleStore: every tenant's enabled rules,
// through a SECURITY DEFINER function, since the dispatcher serves all
// tenants while the core's role sees one tenant's rows at a time.
func (l *EventLog) EnabledRules(ctx context.Context) ([]core.Rule, error) {
	const op = "postgres.EventLog.EnabledRules"
	rows, err := l.db.query(ctx, `select id::text, tenant_id::text, name, table_name, operations, condition, actions, version,
		columns from fraise.observer_rules_enabled()`)
	if err != nil {
		return nil, mapError(op, err)
	}
	defer rows.Close()
	var out []core.Rule
	for rows.Next() {
		var (
			r       core.Rule
			actions []byte
			columns *[]string
		)
		if err := rows.Scan(&r.ID, &r.Tenant, &r.Name, &r.Table, &r.Operations, &r.Condition, &actions, &r.Version, &columns); err != nil {
			return nil, mapError(op, err)
		}
		if columns != nil {
			// Named, if empty: nil means the rule names none.
			r.Columns = append([]string{}, (*columns)...)
		}
		if err := json.Unmarshal(actions, &r.Actions); err != nil {
			return nil, core.E(op, core.CodeInternal, err)
		}
		r.Enabled = true
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, mapError(op, err)
	}
	return out, nil
}

// RulesVersion implements core.RuleStore: the counter every change to
// the rules moves in its own transaction (migration 0015).
func (l *EventLog) RulesVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := l.db.queryRow(ctx, `select fraise.observer_rules_version()`).Scan(&v); err != nil {
		return 0, mapError("postgres.EventLog.RulesVersion", err)
	}
	return v, nil
}

// Changed implements core.RuleStore.
func (l *EventLog) Changed(ctx context.Context) <-chan struct{} {
	in := make(chan struct{}, 1)
	out := make(chan struct{}, 1)
	l.mu.Lock()
	l.subs[in] = struct{}{}
	l.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			l.mu.Lock()
			delete(l.subs, in)
			l.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-in:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
