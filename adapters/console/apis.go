package console

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
	"github.com/fraise-dev/fraise/extauthz/operation"
	"github.com/fraise-dev/fraise/extauthz/policy"
)

// --- explorer ---

// persisted lists the tenant's persisted operations, each named by what
// its document declares (parsed as extauthz parses it).
func (h *Handler) persisted(ctx context.Context, _ *http.Request, s *session) (any, error) {
	if h.o.Store == nil {
		return nil, unavailable("console.persisted", "the persisted-operation store")
	}
	ops, err := h.o.Store.PersistedOperations(ctx, s.p.Tenant)
	if err != nil {
		return nil, err
	}
	type entry struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		Operation string `json:"operation"`
		Document  string `json:"document"`
	}
	out := make([]entry, 0, len(ops))
	for _, op := range ops {
		e := entry{ID: op.Hash, Document: op.Document}
		if g, err := operation.Parse(op.Document, ""); err == nil {
			e.Name, e.Operation = g.Name, g.Operation
		}
		out = append(out, e)
	}
	return out, nil
}

// cost measures an operation before it is run.
func (h *Handler) cost(ctx context.Context, _ *http.Request, s *session) (any, error) {
	const op = "console.cost"
	if h.o.Cost == nil {
		return nil, unavailable(op, "the GraphQL engine")
	}
	var req struct {
		Query         string         `json:"query"`
		Variables     map[string]any `json:"variables"`
		OperationName string         `json:"operationName"`
	}
	if err := decode(op, s, &req); err != nil {
		return nil, err
	}
	if req.Query == "" {
		return nil, invalid(op, "query is required")
	}
	est := h.o.Cost.Estimate(ctx, req.Query, req.OperationName, req.Variables)
	errs := make([]string, 0, len(est.Errors))
	for _, e := range est.Errors {
		errs = append(errs, e.Message)
	}
	return map[string]any{"cost": est.Cost, "limit": est.Limit, "depth": est.Depth, "maxDepth": est.MaxDepth, "errors": errs}, nil
}

// --- policy playground ---

func (h *Handler) playground(op string) (*playground, error) {
	if h.play == nil {
		return nil, unavailable(op, "the policy folder")
	}
	return h.play, nil
}

// draftRequest is the body of the playground's APIs.
type draftRequest struct {
	Files []file          `json:"files"`
	Input json.RawMessage `json:"input,omitempty"`
	Limit int             `json:"limit,omitempty"`
}

// draft is the playground and the draft request s carries, for the APIs
// that work on a draft.
func (h *Handler) draft(op string, s *session) (*playground, draftRequest, error) {
	var req draftRequest
	p, err := h.playground(op)
	if err != nil {
		return nil, req, err
	}
	return p, req, decode(op, s, &req)
}

// policies answers the live policy set, read only.
func (h *Handler) policies(_ context.Context, _ *http.Request, _ *session) (any, error) {
	p, err := h.playground("console.policies")
	if err != nil {
		return nil, err
	}
	files, data, err := p.liveFiles()
	if err != nil {
		return nil, core.E("console.policies", core.CodeInternal, err)
	}
	return map[string]any{"files": files, "data": data}, nil
}

// policyCheck compiles the draft as `fraise policy check` does, tests
// included, and lists OPA's errors with their places.
func (h *Handler) policyCheck(_ context.Context, _ *http.Request, s *session) (any, error) {
	const op = "console.policies.check"
	p, req, err := h.draft(op, s)
	if err != nil {
		return nil, err
	}
	fsys, err := p.draftFS(req.Files)
	if err != nil {
		return nil, err
	}
	if err := policy.Check(fsys); err != nil {
		return map[string]any{"ok": false, "errors": problemsOf(err)}, nil
	}
	return map[string]any{"ok": true, "errors": []problem{}}, nil
}

// policyEvaluate decides the input with the draft and the live policy.
func (h *Handler) policyEvaluate(ctx context.Context, _ *http.Request, s *session) (any, error) {
	const op = "console.policies.evaluate"
	p, req, err := h.draft(op, s)
	if err != nil {
		return nil, err
	}
	var input any
	if len(req.Input) == 0 || json.Unmarshal(req.Input, &input) != nil {
		return nil, invalid(op, "input must be a JSON document")
	}
	draft, live, err := p.compileDraftAndLive(op, req.Files)
	if err != nil {
		return nil, err
	}
	d, l := draft.eval(ctx, input, true), live.eval(ctx, input, true)
	return map[string]any{"draft": d, "live": l, "changed": d.Allow != l.Allow}, nil
}

// policyInput builds an input document from the playground's form, shaped
// as extauthz builds it (docs/policies.md).
func (h *Handler) policyInput(_ context.Context, _ *http.Request, s *session) (any, error) {
	const op = "console.policies.input"
	var req struct {
		Role      string   `json:"role"`
		Operation string   `json:"operation"`
		Fields    []string `json:"fields"`
		Dataset   string   `json:"dataset"`
		Tenant    string   `json:"tenant"`
		Subject   string   `json:"subject"`
	}
	if err := decode(op, s, &req); err != nil {
		return nil, err
	}
	if req.Role == "" {
		return nil, invalid(op, "role is required")
	}
	tenant := req.Tenant
	if tenant == "" {
		tenant = s.p.Tenant
	}
	if tenant == "" {
		tenant = defaultTenantID
	}
	subject := req.Subject
	if subject == "" {
		subject = "playground"
	}
	fields := req.Fields
	if fields == nil {
		fields = []string{}
	}
	in := map[string]any{
		"principal": map[string]any{
			"subject": subject, "tenant": tenant, "roles": []string{req.Role}, "scopes": []string{},
			"kind": "jwt", "tier": "default", "issuer": "playground", "claims": map[string]any{"sub": subject},
		},
	}
	switch {
	case req.Dataset != "":
		method := req.Operation
		if method == "" || method == "query" {
			method = "GetFlightInfo"
		}
		in["request"] = map[string]any{"method": "POST", "path": "/arrow.flight.protocol.FlightService/" + method, "host": "", "headers": map[string]string{}}
		in["flight"] = map[string]any{"method": method, "dataset": req.Dataset}
	default:
		opType := req.Operation
		if opType == "" {
			opType = "query"
		}
		if opType != "query" && opType != "mutation" && opType != "subscription" {
			return nil, invalid(op, "operation must be query, mutation or subscription (or a Flight method with a dataset)")
		}
		in["request"] = map[string]any{"method": "POST", "path": "/graphql", "host": "", "headers": map[string]string{"content-type": "application/json"}}
		in["graphql"] = map[string]any{"operation": opType, "name": "", "root_fields": fields}
	}
	return map[string]any{"input": in}, nil
}

// policyTest runs the draft's Rego tests.
func (h *Handler) policyTest(ctx context.Context, _ *http.Request, s *session) (any, error) {
	const op = "console.policies.test"
	p, req, err := h.draft(op, s)
	if err != nil {
		return nil, err
	}
	fsys, err := p.sandboxedDraft(req.Files)
	if err != nil {
		return nil, err
	}
	return test(ctx, fsys)
}

// policyReplay evaluates the tenant's last decisions that kept their
// input with the draft and the live policy, and lists each decision whose
// allow would change.
func (h *Handler) policyReplay(ctx context.Context, _ *http.Request, s *session) (any, error) {
	const op = "console.policies.replay"
	p, err := h.playground(op)
	if err != nil {
		return nil, err
	}
	if h.o.Store == nil {
		return nil, unavailable(op, "the decision log")
	}
	var req draftRequest
	if err := decode(op, s, &req); err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = defaultReplay
	}
	if limit > maxReplay {
		return nil, invalid(op, fmt.Sprintf("limit is at most %d", maxReplay))
	}
	draft, live, err := p.compileDraftAndLive(op, req.Files)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	ds, err := h.o.Store.Decisions(ctx, s.p.Tenant, decisionlog.Filter{WithInput: true, ExcludeConsole: true, Limit: limit})
	if err != nil {
		return nil, err
	}
	type brief struct {
		Allow  bool   `json:"allow"`
		Reason string `json:"reason"`
	}
	type change struct {
		Decision decisionView `json:"decision"`
		Live     brief        `json:"live"`
		Draft    brief        `json:"draft"`
	}
	changed := []change{}
	for _, d := range ds {
		if err := ctx.Err(); err != nil {
			return nil, core.Errorf(core.CodeTimeout, "the replay took too long: replay fewer decisions").WithOp(op).Wrap(err)
		}
		var input any
		if json.Unmarshal(d.Input, &input) != nil {
			continue
		}
		l, dr := live.eval(ctx, input, false), draft.eval(ctx, input, false)
		if l.Allow != dr.Allow {
			changed = append(changed, change{Decision: h.view(d), Live: brief{l.Allow, l.Reason}, Draft: brief{dr.Allow, dr.Reason}})
		}
	}
	return map[string]any{"replayed": len(ds), "changed": changed}, nil
}

// policyExport is the draft as a unified diff against the live folder,
// for review; the live policy is not touched.
func (h *Handler) policyExport(_ context.Context, _ *http.Request, s *session) (any, error) {
	const op = "console.policies.export"
	p, req, err := h.draft(op, s)
	if err != nil {
		return nil, err
	}
	if _, err := p.draftFS(req.Files); err != nil {
		return nil, err
	}
	live, _, err := p.liveFiles()
	if err != nil {
		return nil, core.E(op, core.CodeInternal, err)
	}
	// Data files are diffed only when the draft changes them.
	draftRego := make([]file, 0, len(req.Files))
	for _, f := range req.Files {
		draftRego = append(draftRego, f)
		if strings.HasPrefix(f.Path, policy.DataDir+"/") {
			if b, err := readFile(p, f.Path); err == nil {
				live = append(live, file{Path: f.Path, Content: b})
			}
		}
	}
	return map[string]any{"diff": unifiedDiff(live, draftRego)}, nil
}

// --- decisions ---

// decisionView is a decision as the console shows it.
type decisionView struct {
	ID            string          `json:"id"`
	Time          time.Time       `json:"time"`
	Tenant        string          `json:"tenant"`
	Subject       string          `json:"subject"`
	Operation     string          `json:"operation"`
	OperationType string          `json:"operationType"`
	Method        string          `json:"method"`
	Path          string          `json:"path"`
	Decision      string          `json:"decision"`
	Status        int             `json:"status"`
	Reason        string          `json:"reason"`
	Revision      string          `json:"policyRevision"`
	TraceID       string          `json:"traceId"`
	TraceURL      string          `json:"traceUrl"`
	Input         json.RawMessage `json:"input"`
}

func (h *Handler) view(d decisionlog.Decision) decisionView {
	v := decisionView{ID: d.ID, Time: d.At, Tenant: d.Tenant, Subject: d.Subject, Operation: d.OperationName,
		OperationType: d.Operation, Method: d.Method, Path: d.Path, Decision: "deny", Status: d.Status,
		Reason: d.Reason, Revision: d.PolicyRevision, TraceID: d.TraceID, Input: d.Input}
	if v.Operation == "" {
		v.Operation = d.Operation
	}
	if d.Allow {
		v.Decision = "allow"
	}
	if d.TraceID != "" && h.o.TraceURL != "" {
		v.TraceURL = strings.ReplaceAll(h.o.TraceURL, "{trace_id}", d.TraceID)
	}
	if v.Input == nil {
		v.Input = json.RawMessage("null")
	}
	return v
}

// decisions searches the tenant's decision log.
func (h *Handler) decisions(ctx context.Context, r *http.Request, s *session) (any, error) {
	const op = "console.decisions"
	if h.o.Store == nil {
		return nil, unavailable(op, "the decision log")
	}
	q := r.URL.Query()
	if t := q.Get("tenant"); t != "" && t != s.p.Tenant {
		// The log is read in the session's tenant only.
		return nil, core.Errorf(core.CodeForbidden, "decisions of another tenant").WithOp(op)
	}
	// The console's own requests are left out unless asked for: every
	// screen's reads are decisions too, and would bury the traffic.
	f := decisionlog.Filter{Subject: q.Get("subject"), Operation: q.Get("operation"), Reason: q.Get("reason"),
		ExcludeConsole: q.Get("console") != "true"}
	switch q.Get("decision") {
	case "":
	case "allow", "deny":
		allow := q.Get("decision") == "allow"
		f.Allow = &allow
	default:
		return nil, invalid(op, "decision is allow or deny")
	}
	for _, tv := range []struct {
		name string
		into *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(tv.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return nil, invalid(op, tv.name+" is an RFC 3339 time")
			}
			*tv.into = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, invalid(op, "limit is between 1 and 1000")
		}
		f.Limit = n
	}
	ds, err := h.o.Store.Decisions(ctx, s.p.Tenant, f)
	if err != nil {
		return nil, err
	}
	out := make([]decisionView, len(ds))
	for i, d := range ds {
		out[i] = h.view(d)
	}
	return out, nil
}

// --- observers ---

// observers lists the tenant's rules and its queue's backlog.
func (h *Handler) observers(ctx context.Context, _ *http.Request, s *session) (any, error) {
	const op = "console.observers"
	if h.o.Store == nil {
		return nil, unavailable(op, "the rule store")
	}
	rules, err := h.o.Store.Rules(ctx, s.p.Tenant)
	if err != nil {
		return nil, err
	}
	type delivery struct {
		Time       time.Time `json:"time"`
		Status     string    `json:"status"`
		Attempts   int       `json:"attempts"`
		Error      string    `json:"error"`
		Kind       string    `json:"kind,omitempty"`
		HTTPStatus int       `json:"httpStatus,omitempty"`
	}
	type rule struct {
		Name       string     `json:"name"`
		Table      string     `json:"table"`
		Events     []string   `json:"events"`
		Condition  string     `json:"condition"`
		Action     string     `json:"action"`
		Enabled    bool       `json:"enabled"`
		Deliveries []delivery `json:"deliveries"`
		Breaker    string     `json:"breaker"`
	}
	var dead []core.DeadLetter
	var pending int64
	var oldest time.Duration
	if h.o.Observers != nil {
		if pending, err = h.o.Observers.Backlog(ctx, s.p.Tenant); err != nil {
			return nil, err
		}
		if pending > 0 {
			if oldest, err = h.o.Observers.OldestAge(ctx, s.p.Tenant); err != nil {
				return nil, err
			}
		}
		if dead, err = h.o.Observers.DeadLetters(ctx, s.p.Tenant, 100); err != nil {
			return nil, err
		}
	}
	out := make([]rule, 0, len(rules))
	for _, r := range rules {
		kinds := make([]string, 0, len(r.Actions))
		for _, a := range r.Actions {
			k := a.Kind
			if a.URL != "" {
				k += " " + a.URL
			}
			kinds = append(kinds, k)
		}
		ru := rule{Name: r.Name, Table: r.Table, Events: r.Operations, Condition: r.Condition, Action: strings.Join(kinds, ", "),
			Enabled: r.Enabled, Deliveries: []delivery{}, Breaker: h.breaker(s.p.Tenant, r.Actions)}
		// The workers' recent attempts, newest first...
		logged := map[string]bool{} // jobs the log holds as dead
		if h.o.Deliveries != nil {
			recent, err := h.o.Deliveries.Recent(ctx, s.p.Tenant, r.ID, recentDeliveries)
			if err != nil {
				return nil, err
			}
			for _, d := range recent {
				ru.Deliveries = append(ru.Deliveries, delivery{Time: d.At, Status: d.Status, Attempts: d.Attempt,
					Error: d.Error, Kind: d.Kind, HTTPStatus: d.HTTPStatus})
				if d.Status == core.DeliveryDead {
					logged[d.JobID] = true
				}
			}
		}
		// ...and the dead letters the queue still holds that the log no
		// longer (or never did) record.
		for _, d := range dead {
			if (d.Job.RuleID == r.ID || (d.Job.RuleID == "" && d.Job.RuleName == r.Name)) && !logged[d.Job.ID] {
				ru.Deliveries = append(ru.Deliveries, delivery{Time: d.At, Status: core.DeliveryDead, Attempts: d.Job.Attempt,
					Error: d.Reason, Kind: d.Job.Action.Kind})
			}
		}
		slices.SortStableFunc(ru.Deliveries, func(a, b delivery) int { return b.Time.Compare(a.Time) })
		out = append(out, ru)
	}
	return map[string]any{"rules": out, "backlog": map[string]any{"pending": pending, "oldestAgeSeconds": math.Round(oldest.Seconds())}}, nil
}

// recentDeliveries is how many of a rule's recent deliveries the
// observers screen shows at most (the Redis log keeps 50).
const recentDeliveries = 50

// deadLetters lists the tenant's dead-lettered jobs, oldest first.
func (h *Handler) deadLetters(ctx context.Context, _ *http.Request, s *session) (any, error) {
	if h.o.Observers == nil {
		return []any{}, nil
	}
	dead, err := h.o.Observers.DeadLetters(ctx, s.p.Tenant, 500)
	if err != nil {
		return nil, err
	}
	type entry struct {
		ID       string           `json:"id"`
		Rule     string           `json:"rule"`
		Time     time.Time        `json:"time"`
		Error    string           `json:"error"`
		Attempts int              `json:"attempts"`
		Payload  core.ChangeEvent `json:"payload"`
	}
	out := make([]entry, 0, len(dead))
	for _, d := range dead {
		out = append(out, entry{ID: d.ID, Rule: d.Job.RuleName, Time: d.At, Error: d.Reason, Attempts: d.Job.Attempt, Payload: d.Job.Event})
	}
	return out, nil
}

// replayDeadLetter moves one dead letter back to the tenant's queue.
func (h *Handler) replayDeadLetter(ctx context.Context, r *http.Request, s *session) (any, error) {
	const op = "console.observers.replay"
	if h.o.Observers == nil {
		return nil, unavailable(op, "the observer queue")
	}
	id := r.PathValue("id")
	n, err := h.o.Observers.Replay(ctx, s.p.Tenant, []string{id})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, core.Errorf(core.CodeNotFound, "no dead letter %s", id).WithOp(op)
	}
	return map[string]bool{"replayed": true}, nil
}

// --- quotas ---

// quotas answers the tenant's tier, usage and refusals of the last day.
func (h *Handler) quotas(ctx context.Context, _ *http.Request, s *session) (any, error) {
	const op = "console.quotas"
	if h.o.Store == nil {
		return nil, unavailable(op, "the quota store")
	}
	q, err := h.o.Store.Quota(ctx, s.p.Tenant)
	if err != nil {
		return nil, err
	}
	refusals, err := h.o.Store.Refusals(ctx, s.p.Tenant, h.o.Now().Add(-24*time.Hour))
	if err != nil {
		return nil, err
	}
	type usage struct {
		Name  string `json:"name"`
		Used  int64  `json:"used"`
		Limit *int64 `json:"limit"`
	}
	type refusal struct {
		Time      time.Time `json:"time"`
		RateLimit int64     `json:"ratelimit"`
		Admission int64     `json:"admission"`
	}
	us := make([]usage, 0, len(q.Quotas))
	for _, u := range q.Quotas {
		x := usage{Name: u.Resource, Used: u.Used}
		if u.Limit >= 0 {
			lim := u.Limit
			x.Limit = &lim
		}
		us = append(us, x)
	}
	rs := make([]refusal, 0, len(refusals))
	for _, r := range refusals {
		rs = append(rs, refusal{Time: r.Hour, RateLimit: r.RateLimit, Admission: r.Admission})
	}
	return []map[string]any{{"tenant": s.p.Tenant, "tier": q.Tier, "quotas": us, "refusals": rs}}, nil
}

// breakerRank orders breaker states by how much they hold back.
var breakerRank = map[string]int{"closed": 0, "half-open": 1, "open": 2}

// breaker is the state of the most held-back breaker among a rule's
// actions: one open target means some of its deliveries wait.
func (h *Handler) breaker(tenant string, actions []core.Action) string {
	if h.o.Breaker == nil {
		return "unknown"
	}
	worst := "closed"
	for _, a := range actions {
		if st := h.o.Breaker(tenant, a); breakerRank[st] > breakerRank[worst] {
			worst = st
		}
	}
	return worst
}
