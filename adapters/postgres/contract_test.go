package postgres_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/extauthz/apikey"
	"github.com/fraise-dev/fraise/extauthz/authztest"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
)

// The ports' contract suites (core/coretest) against PostgreSQL: the same
// cases the in-memory implementations pass, so that a unit test written
// against those holds here too.

// eventLogFixture is the observed orders table's outbox.
func eventLogFixture(t *testing.T) (coretest.EventLogFixture, *postgres.EventLog) {
	_, l, d := mustObserved(t)
	return coretest.EventLogFixture{Log: l, Insert: func(tb testing.TB, tenant string, ids ...int64) {
		tb.Helper()
		rows := make([]string, len(ids))
		for i, id := range ids {
			rows[i] = "(" + strconv.FormatInt(id, 10) + ", '" + tenant + "', 1)"
		}
		exec(tb, d, tenant, "insert into orders (id, tenant_id, total) values "+strings.Join(rows, ", "))
	}}, l
}

func TestEventLogContract(t *testing.T) {
	coretest.TestEventLogContract(t, func(t *testing.T) coretest.EventLogFixture {
		f, _ := eventLogFixture(t)
		return f
	})
}

func TestOutboxHistoryContract(t *testing.T) {
	coretest.TestOutboxHistoryContract(t, func(t *testing.T) coretest.OutboxHistoryFixture {
		f, l := eventLogFixture(t)
		return coretest.OutboxHistoryFixture{EventLogFixture: f, History: l}
	})
}

func TestRuleStoreContract(t *testing.T) {
	coretest.TestRuleStoreContract(t, func(t *testing.T) coretest.RuleStoreFixture {
		_, l, d := mustObserved(t)
		mustOK := func(tb testing.TB, tenant, sql string, args ...any) result {
			tb.Helper()
			r := call(tb, d, tenant, sql, args...)
			if r.Status != "ok" {
				tb.Fatalf("%s: got %+v", sql, r)
			}
			return r
		}
		return coretest.RuleStoreFixture{
			Rules: l,
			Create: func(tb testing.TB, r core.Rule) string {
				tb.Helper()
				in := map[string]any{"name": r.Name, "table": r.Table, "operations": r.Operations,
					"condition": r.Condition, "actions": r.Actions, "enabled": r.Enabled}
				if r.Columns != nil {
					in["columns"] = r.Columns
				}
				b, err := json.Marshal(in)
				if err != nil {
					tb.Fatal(err)
				}
				return mustOK(tb, r.Tenant, "fn_create_observer_rule($1::jsonb)", string(b)).ID
			},
			SetCondition: func(tb testing.TB, tenant, id, c string) {
				b, _ := json.Marshal(map[string]string{"condition": c})
				mustOK(tb, tenant, "fn_update_observer_rule($1::uuid, $2::jsonb)", id, string(b))
			},
			SetEnabled: func(tb testing.TB, tenant, id string, on bool) {
				fn := "fn_disable_observer_rule($1::uuid)"
				if on {
					fn = "fn_enable_observer_rule($1::uuid)"
				}
				mustOK(tb, tenant, fn, id)
			},
			Delete: func(tb testing.TB, tenant, id string) { mustOK(tb, tenant, "fn_delete_observer_rule($1::uuid)", id) },
		}
	})
}

func TestPersistedDocumentsContract(t *testing.T) {
	coretest.TestPersistedDocumentsContract(t, func(t *testing.T) coretest.PersistedDocumentsFixture {
		admin, _, d := mustObserved(t)
		return coretest.PersistedDocumentsFixture{
			Store: postgres.NewPersistedDocuments(d, postgres.PersistedOptions{}),
			Trust: func(tb testing.TB, doc string) {
				tb.Helper()
				if _, err := admin.Exec(context.Background(), "insert into fraise.trusted_documents (hash, document) values ($1, $2)",
					core.DocumentHash(doc), doc); err != nil {
					tb.Fatal(err)
				}
			},
		}
	})
}

// mustAdminDB opens a migrated database as its owner, as `fraise apikey`
// does.
func mustAdminDB(tb testing.TB) (*postgres.DB, *pgx.Conn) {
	tb.Helper()
	ctx := context.Background()
	pg, db := postgrestest.New(tb)
	d, err := postgres.Open(ctx, pg.AdminURL(db), postgres.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	conn, err := pgx.Connect(ctx, pg.AdminURL(db))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(ctx) })
	return d, conn
}

func TestAPIKeyStoreContract(t *testing.T) {
	authztest.TestAPIKeyStoreContract(t, func(t *testing.T) apikey.Store {
		d, _ := mustAdminDB(t)
		return postgres.NewAPIKeys(d)
	})
}

func TestDecisionLogContract(t *testing.T) {
	authztest.TestDecisionLogContract(t, func(t *testing.T) authztest.DecisionLogFixture {
		d, admin := mustAdminDB(t)
		return authztest.DecisionLogFixture{Log: postgres.NewDecisions(d), Recorded: func(tb testing.TB) []decisionlog.Decision {
			tb.Helper()
			rows, err := admin.Query(context.Background(), `select decision_id, request_id, decided_at, subject,
				coalesce(tenant_id::text, ''), kind, operation, operation_name, allow, status, reason, policy_revision, latency_us
				from fraise.authz_decisions`)
			if err != nil {
				tb.Fatal(err)
			}
			ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (decisionlog.Decision, error) {
				var (
					d  decisionlog.Decision
					us int64
				)
				err := r.Scan(&d.ID, &d.RequestID, &d.At, &d.Subject, &d.Tenant, &d.Kind, &d.Operation, &d.OperationName,
					&d.Allow, &d.Status, &d.Reason, &d.PolicyRevision, &us)
				d.Latency = time.Duration(us) * time.Microsecond
				return d, err
			})
			if err != nil {
				tb.Fatal(err)
			}
			return ds
		}}
	})
}
