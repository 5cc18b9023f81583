package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/deploy/demo"
)

// demoDatasets are the Flight datasets `fraise dev --demo` serves when
// fraise.toml declares none: the demo's GraphQL types, so each column
// carries its field's @mask and @auth (a User's email is masked for a
// token without read:User.email, a Post's internal note is NULL without
// read:Post.internalNote).
func demoDatasets() []config.Dataset {
	return []config.Dataset{
		{Name: "people.users", GraphQLType: "User", Columns: []config.DatasetColumn{
			{Name: "id", Type: "uuid"}, {Name: "name", Type: "text"}, {Name: "email", Type: "text"},
			{Name: "created_at", Type: "timestamptz"},
		}},
		{Name: "blog.posts", GraphQLType: "Post", Columns: []config.DatasetColumn{
			{Name: "id", Type: "uuid"}, {Name: "title", Type: "text"}, {Name: "published_at", Type: "timestamptz"},
			{Name: "tags", Type: "text[]"}, {Name: "minutes", Type: "int4"},
			{Name: "author_email", Type: "text", Field: "author.email"}, {Name: "internal_note", Type: "text"},
		}},
	}
}

// demoRuleName names the observer rule `fraise dev --demo` keeps pointed
// at its receiver.
const demoRuleName = "demo: new posts"

// applyDemo turns cfg into the demo's: the demo datasets (unless
// fraise.toml declares datasets or another schema) and observers, whose
// webhooks may reach the loopback receiver.
func applyDemo(cfg *config.Config) {
	if len(cfg.Flight.Datasets) == 0 && cfg.Server.Schema == "" {
		cfg.Flight.Datasets = demoDatasets()
	}
	cfg.Observers.Enabled = true
	cfg.Observers.AllowPrivateTargets = true
}

// ensureDemoRule creates, or points at url, the Acme tenant's rule that
// sends every new post to the demo receiver. It runs as the server's role,
// in the tenant, as a rule written through GraphQL would.
func ensureDemoRule(ctx context.Context, dbURL, url string) error {
	db, err := postgres.Open(ctx, dbURL, postgres.Options{MaxConns: 1})
	if err != nil {
		return fmt.Errorf("demo rule: database.url: %w", err)
	}
	defer db.Close()
	rule, _ := json.Marshal(map[string]any{
		"name": demoRuleName, "table": "public.posts", "operations": []string{"INSERT"},
		"columns": []string{"id", "title", "author_id"},
		"actions": []map[string]any{{"kind": "webhook", "url": url}},
	})
	if err := db.EnsureRule(ctx, demo.TenantAcme, rule); err != nil {
		return fmt.Errorf("demo rule: %w (--demo needs the demo schema: run `fraise migrate --demo` first)", err)
	}
	return nil
}

// demoReceiver is the webhook receiver `fraise dev --demo` runs for the
// demo rule: it prints each delivery, so that an insert shows the whole
// observer pipeline at work.
type demoReceiver struct {
	mu  sync.Mutex
	out io.Writer
	log *slog.Logger
}

// delivery is the part of a webhook delivery (docs/observers.md) the
// receiver prints.
type delivery struct {
	ID   string `json:"id"`
	Rule struct {
		Name string `json:"name"`
	} `json:"rule"`
	Event struct {
		Table  string          `json:"table"`
		Op     string          `json:"op"`
		Tenant string          `json:"tenant"`
		After  json.RawMessage `json:"after"`
	} `json:"event"`
}

func (d *demoReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, `{"error":"POST a delivery"}`, http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, `{"error":"unreadable body"}`, http.StatusBadRequest)
		return
	}
	var dl delivery
	if err := json.Unmarshal(body, &dl); err != nil {
		http.Error(w, `{"error":"not a delivery"}`, http.StatusBadRequest)
		return
	}
	after := new(bytes.Buffer)
	if json.Compact(after, dl.Event.After) != nil {
		after.Reset()
	}
	d.mu.Lock()
	fmt.Fprintf(d.out, "observer delivery: rule %q, %s on %s of tenant %s: %s\n", dl.Rule.Name, dl.Event.Op, dl.Event.Table, dl.Event.Tenant, after)
	d.mu.Unlock()
	d.log.Info("observer delivery received", "rule", dl.Rule.Name, "op", dl.Event.Op, "table", dl.Event.Table,
		"idempotency_key", r.Header.Get("Idempotency-Key"))
	w.WriteHeader(http.StatusNoContent)
}

// serveDemoReceiver serves the receiver on ln until ctx ends.
func serveDemoReceiver(ctx context.Context, ln net.Listener, out io.Writer, log *slog.Logger) error {
	srv := newHTTPServer(&demoReceiver{out: out, log: log}, adminHTTPTimeouts)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	return serveHTTP(ctx, srv, ln, 5*time.Second)
}
