// Package redis is the observers' job queue on Redis Streams
// (core.JobQueue, core.DeadLetters) and its delivery log (core.DeliveryLog,
// a capped list per tenant and rule): a stream per tenant read by one
// consumer group, so several worker processes share the work; pending jobs
// of a worker that stopped answering are reclaimed with XAUTOCLAIM;
// retries wait in a sorted set until due; jobs that will not be retried go
// to a dead-letter stream, from which they can be replayed.
//
// Keys carry the tenant in a hash tag (fraise:{tenant}:observer:...), so a
// tenant's keys live on one cluster slot and its scripts are atomic.
// Redis must persist (appendonly yes) for the at-least-once guarantee: the
// dispatcher's cursor moves past events once their jobs are in Redis.
package redis

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/core"
)

// Group is the consumer group every worker joins.
const Group = "fraise-workers"

const tenantsKey = "fraise:observer:tenants"

func jobsKey(tenant string) string    { return "fraise:{" + tenant + "}:observer:jobs" }
func delayedKey(tenant string) string { return "fraise:{" + tenant + "}:observer:delayed" }
func dlqKey(tenant string) string     { return "fraise:{" + tenant + "}:observer:dlq" }

// deliveriesKey is the list of a rule's recent delivery attempts, newest
// first.
func deliveriesKey(tenant, rule string) string {
	return "fraise:{" + tenant + "}:observer:deliveries:" + rule
}

// enqueuedKey holds the outbox position of the last event whose jobs were
// added to the tenant's stream.
func enqueuedKey(tenant string) string { return "fraise:{" + tenant + "}:observer:enqueued" }

// enqueueScript adds one tenant's jobs of a batch to its stream, except
// those of events at or before the last position it added: the batch, or
// go-redis's resend of the pipeline after a timeout, may come again after
// an attempt whose answer was lost, and a job added twice is an email or a
// Slack message sent twice. ARGV is position, job, position, job, ...;
// a job with position "" (not from the outbox) is always added. Positions
// are fixed-width decimal, so they compare as strings (positionArg).
var enqueueScript = goredis.NewScript(`
local last = redis.call('GET', KEYS[2])
local top = last
local added = 0
for i = 1, #ARGV, 2 do
  local pos = ARGV[i]
  if pos == '' or not last or pos > last then
    redis.call('XADD', KEYS[1], '*', 'job', ARGV[i + 1])
    added = added + 1
    if pos ~= '' and (not top or pos > top) then top = pos end
  end
end
if top and top ~= last then redis.call('SET', KEYS[2], top) end
return added
`)

// positionArg is the script's form of an outbox position; "" for none.
// Generation 0's form is the one markers had before generations; a later
// generation's starts with "g", which sorts after every digit, so it comes
// after every position of generation 0, and generations compare by their
// fixed-width number.
func positionArg(p core.Position) string {
	if p == (core.Position{}) {
		return ""
	}
	if p.Generation == 0 {
		return fmt.Sprintf("%020d:%020d", p.XID, p.ID)
	}
	return fmt.Sprintf("g%010d:%020d:%020d", p.Generation, p.XID, p.ID)
}

// generationOfArg is the generation of a position in positionArg's form.
func generationOfArg(s string) int {
	if !strings.HasPrefix(s, "g") || len(s) < 11 {
		return 0
	}
	g, err := strconv.Atoi(s[1:11])
	if err != nil {
		return 0
	}
	return g
}

// Options configures a Queue.
type Options struct {
	Addr, Password string
	// ReclaimIdle is how long a job may stay pending with a consumer before
	// another consumer takes it over (1 min when zero). It must exceed the
	// longest delivery timeout.
	ReclaimIdle time.Duration
	// DialTimeout and ReadTimeout bound Redis calls (1 s when zero), so a
	// lost Redis is noticed quickly.
	DialTimeout, ReadTimeout time.Duration
	// PoolSize is the most connections (64 when zero); give each worker
	// slot one, or acknowledgements queue for connections.
	PoolSize int
	// TracerProvider, when set, makes a client span of each command run
	// within a span and a producer span of each traced job enqueued
	// (SpanSend), which the job then carries to its worker.
	TracerProvider trace.TracerProvider

	// TLS, when set, returns the TLS configuration of each new connection
	// (rediss), asked anew each time so that renewed certificates and CAs
	// reach the next connection: connections are then TLS only, the
	// server verified against the configuration's roots for its
	// ServerName, or else the host of Addr.
	TLS func() *tls.Config
	// PasswordSource, when set, returns the password of each new
	// connection, overriding Password: a rotated password reaches the
	// next connection while those open stay authenticated.
	PasswordSource func() string
	// ConnMaxLifetime closes a connection once it has been open this long,
	// when it is next taken from the pool (0: never). It bounds how long
	// connections made with a rotated credential live on.
	ConnMaxLifetime time.Duration
	// DeliveryLogSize is how many delivery attempts the log keeps per
	// tenant and rule (DefaultDeliveryLogSize when zero).
	DeliveryLogSize int
}

// DefaultDeliveryLogSize is how many recent delivery attempts per rule
// the delivery log keeps unless told otherwise.
const DefaultDeliveryLogSize = 50

// Queue is the Redis Streams job queue.
type Queue struct {
	c           *goredis.Client
	reclaimIdle time.Duration
	tracer      *tracer // nil: no tracing
	logSize     int64

	acks    chan ackReq
	stop    chan struct{}
	ackDone chan struct{}
	closeMu sync.Once

	mu          sync.Mutex
	tenants     []string
	tenantsAt   time.Time
	promotedAt  time.Time
	shareStart  int // the tenant Fetch's shares start from (shares)
	reclaimedAt map[string]time.Time
}

var (
	_ core.JobQueue    = (*Queue)(nil)
	_ core.DeadLetters = (*Queue)(nil)
	_ core.DeliveryLog = (*Queue)(nil)
)

// New returns a queue on the Redis at o.Addr (it does not connect yet).
func New(o Options) *Queue {
	if o.ReclaimIdle <= 0 {
		o.ReclaimIdle = time.Minute
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = time.Second
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = time.Second
	}
	if o.PoolSize <= 0 {
		o.PoolSize = 64
	}
	if o.DeliveryLogSize <= 0 {
		o.DeliveryLogSize = DefaultDeliveryLogSize
	}
	opts := &goredis.Options{
		Addr: o.Addr, Password: o.Password, DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout,
		WriteTimeout: o.ReadTimeout, MaxRetries: 1, PoolSize: o.PoolSize, ConnMaxLifetime: o.ConnMaxLifetime,
	}
	if o.TLS != nil {
		opts.Dialer = tlsDialer(o.TLS, o.DialTimeout)
	}
	if o.PasswordSource != nil {
		opts.CredentialsProvider = func() (string, string) { return "", o.PasswordSource() }
	}
	c := goredis.NewClient(opts)
	q := &Queue{c: c, reclaimIdle: o.ReclaimIdle, logSize: int64(o.DeliveryLogSize), reclaimedAt: map[string]time.Time{},
		acks: make(chan ackReq, 1024), stop: make(chan struct{}), ackDone: make(chan struct{})}
	if o.TracerProvider != nil {
		q.tracer = newTracer(o.TracerProvider, o.Addr)
		c.AddHook(q.tracer)
	}
	go q.ackLoop()
	return q
}

// tlsDialer dials a TLS connection with the configuration newTLS returns
// for it, the server verified for the address's host unless the
// configuration names another: what go-redis's own TLSConfig does, but
// with the configuration current at each dial.
func tlsDialer(newTLS func() *tls.Config, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		cfg := newTLS()
		if cfg.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			cfg.ServerName = host
		}
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}, Config: cfg}
		return d.DialContext(ctx, network, addr)
	}
}

// Close stops acknowledging and closes the connections.
func (q *Queue) Close() error {
	q.closeMu.Do(func() {
		close(q.stop)
		<-q.ackDone
	})
	return q.c.Close()
}

// Ping reports whether Redis answers.
func (q *Queue) Ping(ctx context.Context) error {
	return mapError("redis.Ping", q.c.Ping(ctx).Err())
}

func mapError(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return core.E(op, core.CodeUnavailable, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, goredis.ErrClosed) || strings.Contains(err.Error(), "connection refused") {
		return core.Errorf(core.CodeUnavailable, "queue unavailable").WithOp(op).Wrap(err)
	}
	return core.Errorf(core.CodeUnavailable, "queue error").WithOp(op).Wrap(err)
}

func isBusyGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") }
func isNoGroup(err error) bool   { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }

// Enqueue implements core.JobQueue: one pipeline for the whole batch.
func (q *Queue) Enqueue(ctx context.Context, jobs []core.Job) (err error) {
	const op = "redis.Enqueue"
	if len(jobs) == 0 {
		return nil
	}
	if q.tracer != nil {
		// The caller's jobs keep the request's trace context: a batch that
		// fails is enqueued again, in new send spans.
		jobs = slices.Clone(jobs)
		end := q.tracer.send(jobs)
		defer func() { end(err) }()
	}
	var order []string
	args := map[string][]any{}
	for _, j := range jobs {
		if _, ok := args[j.Tenant]; !ok {
			order = append(order, j.Tenant)
		}
		b, err := json.Marshal(j)
		if err != nil {
			return core.E(op, core.CodeInternal, err)
		}
		args[j.Tenant] = append(args[j.Tenant], positionArg(j.Event.Pos), string(b))
	}
	pipe := q.c.Pipeline()
	for _, t := range order {
		pipe.SAdd(ctx, tenantsKey, t)
		pipe.XGroupCreateMkStream(ctx, jobsKey(t), Group, "0")
		enqueueScript.Eval(ctx, pipe, []string{jobsKey(t), enqueuedKey(t)}, args[t]...)
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		for _, c := range cmds {
			if c.Err() != nil && !isBusyGroup(c.Err()) {
				return mapError(op, c.Err())
			}
		}
	}
	return nil
}

// Backlog implements core.JobQueue: jobs waiting, running or due later.
func (q *Queue) Backlog(ctx context.Context, tenant string) (int64, error) {
	pipe := q.c.Pipeline()
	n := pipe.XLen(ctx, jobsKey(tenant))
	z := pipe.ZCard(ctx, delayedKey(tenant))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return 0, mapError("redis.Backlog", err)
	}
	return n.Val() + z.Val(), nil
}

// OldestAge returns how long ago the oldest job waiting for tenant was
// first enqueued (0 when none waits): the older of the first job in its
// stream (jobs waiting or running, in the order they were added) and the
// retry due first, one round trip for both. A job whose enqueue time is
// unknown counts from when it was added to the stream.
func (q *Queue) OldestAge(ctx context.Context, tenant string) (time.Duration, error) {
	pipe := q.c.Pipeline()
	first := pipe.XRangeN(ctx, jobsKey(tenant), "-", "+", 1)
	due := pipe.ZRange(ctx, delayedKey(tenant), 0, 0)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return 0, mapError("redis.OldestAge", err)
	}
	var oldest time.Time
	consider := func(raw string, added time.Time) {
		var j core.Job
		at := added
		if json.Unmarshal([]byte(raw), &j) == nil && !j.EnqueuedAt.IsZero() {
			at = j.EnqueuedAt
		}
		if !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	for _, m := range first.Val() {
		var added time.Time
		if ms, err := strconv.ParseInt(strings.SplitN(m.ID, "-", 2)[0], 10, 64); err == nil {
			added = time.UnixMilli(ms)
		}
		raw, _ := m.Values["job"].(string)
		consider(raw, added)
	}
	for _, raw := range due.Val() {
		consider(raw, time.Time{})
	}
	if oldest.IsZero() {
		return 0, nil
	}
	return max(time.Since(oldest), 0), nil
}

// deliveryLogTTL is how long a rule's delivery log outlives its last
// attempt: a deleted rule's log does not stay in Redis for ever.
const deliveryLogTTL = 7 * 24 * time.Hour

// Record implements core.DeliveryLog: the attempt goes to the head of the
// rule's list, trimmed to the log's size, in one round trip; the list
// expires a week after its last attempt.
func (q *Queue) Record(ctx context.Context, tenant, rule string, d core.DeliveryAttempt) error {
	d.At = d.At.UTC()
	b, err := json.Marshal(d)
	if err != nil {
		return core.E("redis.Record", core.CodeInternal, err)
	}
	key := deliveriesKey(tenant, rule)
	_, err = q.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.LPush(ctx, key, b)
		p.LTrim(ctx, key, 0, q.logSize-1)
		p.Expire(ctx, key, deliveryLogTTL)
		return nil
	})
	return mapError("redis.Record", err)
}

// Recent implements core.DeliveryLog.
func (q *Queue) Recent(ctx context.Context, tenant, rule string, n int) ([]core.DeliveryAttempt, error) {
	out := []core.DeliveryAttempt{}
	if n <= 0 {
		return out, nil
	}
	raws, err := q.c.LRange(ctx, deliveriesKey(tenant, rule), 0, int64(n)-1).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, mapError("redis.Recent", err)
	}
	for _, raw := range raws {
		var d core.DeliveryAttempt
		if json.Unmarshal([]byte(raw), &d) == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// Tenants returns the tenants that ever had jobs.
func (q *Queue) Tenants(ctx context.Context) ([]string, error) {
	ts, err := q.c.SMembers(ctx, tenantsKey).Result()
	return ts, mapError("redis.Tenants", err)
}

func (q *Queue) cachedTenants(ctx context.Context) ([]string, error) {
	q.mu.Lock()
	// An empty list is not cached: the first tenant's jobs must not wait.
	if time.Since(q.tenantsAt) < time.Second && len(q.tenants) > 0 {
		ts := q.tenants
		q.mu.Unlock()
		return ts, nil
	}
	q.mu.Unlock()
	ts, err := q.Tenants(ctx)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.tenants, q.tenantsAt = ts, time.Now()
	q.mu.Unlock()
	return ts, nil
}

// promote moves due retries of tenant into its stream, atomically.
var promote = goredis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'job', m)
  redis.call('ZREM', KEYS[1], m)
end
return #due`)

// Fetch implements core.JobQueue.
func (q *Queue) Fetch(ctx context.Context, consumer string, max int, room func(string) int, block time.Duration) ([]core.Delivery, error) {
	const op = "redis.Fetch"
	if max <= 0 {
		return nil, nil
	}
	tenants, err := q.cachedTenants(ctx)
	if err != nil {
		return nil, err
	}
	if err := q.promoteDue(ctx, tenants); err != nil {
		return nil, err
	}
	var out []core.Delivery
	// The room of each tenant, as it is now, less what this call took.
	left := make(map[string]int, len(tenants))
	for _, t := range tenants {
		left[t] = room(t)
	}
	// Reclaim first: a dead worker's jobs are the oldest.
	for _, t := range tenants {
		if n := min(left[t], max-len(out)); n > 0 && q.reclaimDue(t) {
			ds, err := q.reclaim(ctx, consumer, t, n)
			if err != nil {
				return out, err
			}
			out = append(out, ds...)
			left[t] -= len(ds)
		}
	}
	var withRoom []string
	for _, t := range tenants {
		if left[t] > 0 {
			withRoom = append(withRoom, t)
		}
	}
	// Then new jobs, in rounds of one pipeline each: the budget shared
	// among the tenants not asked yet, or that filled their share and may
	// have more, until it is spent or nobody has more. Each round asks a
	// tenant anew or returns jobs, so there are at most about
	// len(tenants)/max rounds, and usually one.
	asked := map[string]bool{}
	more := map[string]bool{}
	for len(out) < max {
		var ask []string
		for _, t := range withRoom {
			if left[t] > 0 && (!asked[t] || more[t]) {
				ask = append(ask, t)
			}
		}
		if len(ask) == 0 {
			break
		}
		pipe := q.c.Pipeline()
		var (
			reads  []*goredis.XStreamSliceCmd
			readTs []string
			counts []int
		)
		for t, n := range q.shares(ask, max-len(out), func(t string) int { return left[t] }) {
			reads = append(reads, pipe.XReadGroup(ctx, &goredis.XReadGroupArgs{
				Group: Group, Consumer: consumer, Streams: []string{jobsKey(t), ">"}, Count: int64(n), Block: -1,
			}))
			readTs, counts = append(readTs, t), append(counts, n)
		}
		if len(reads) == 0 {
			break
		}
		_, _ = pipe.Exec(ctx)
		for i, r := range reads {
			t := readTs[i]
			asked[t], more[t] = true, false
			if err := r.Err(); err != nil && !errors.Is(err, goredis.Nil) {
				if isNoGroup(err) {
					q.createGroup(ctx, t)
					continue
				}
				return out, mapError(op, err)
			}
			entries := 0
			for _, st := range r.Val() {
				entries += len(st.Messages)
			}
			ds := q.deliveries(ctx, t, r.Val())
			out = append(out, ds...)
			left[t] -= len(ds)
			more[t] = entries == counts[i]
		}
	}
	if len(tenants) == 0 && block > 0 {
		// Nothing to wait on yet: poll for the first tenant.
		_ = sleepCtx(ctx, min(block, 50*time.Millisecond))
		return out, nil
	}
	// Every tenant at its share returns at once: the caller waits for one
	// of its own jobs to finish, which Redis cannot tell it.
	if len(out) > 0 || block <= 0 || len(withRoom) == 0 {
		return out, nil
	}
	// Nothing now: wait on every stream with room, one job each.
	streams := make([]string, 0, 2*len(withRoom))
	for _, t := range withRoom {
		streams = append(streams, jobsKey(t))
	}
	for range withRoom {
		streams = append(streams, ">")
	}
	// Wake up in time to release due retries; and soon when a tenant is at
	// its share, since its stream is not waited on and a slot may free up.
	block = min(block, 250*time.Millisecond)
	if len(withRoom) < len(tenants) {
		block = min(block, 5*time.Millisecond)
	}
	res, err := q.c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: Group, Consumer: consumer, Streams: streams, Count: 1, Block: block}).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		if ctx.Err() != nil {
			return out, nil
		}
		if isNoGroup(err) {
			for _, t := range withRoom {
				q.createGroup(ctx, t)
			}
			return out, nil
		}
		return out, mapError(op, err)
	}
	for _, s := range res {
		t := tenantOfKey(s.Stream)
		out = append(out, q.deliveries(ctx, t, []goredis.XStream{s})...)
	}
	// Jobs of more tenants than max may arrive together: those past max go
	// back to the end of their streams rather than wait, unstarted, with
	// a worker that has no slot for them.
	if len(out) > max {
		for _, d := range out[max:] {
			if err := q.requeue(ctx, d); err != nil {
				return out[:max], err
			}
		}
		out = out[:max]
	}
	return out, nil
}

// requeue puts a delivery's job back at the end of its tenant's stream,
// in one transaction with the delivery's acknowledgement.
func (q *Queue) requeue(ctx context.Context, d core.Delivery) error {
	b, err := json.Marshal(d.Job)
	if err != nil {
		return core.E("redis.requeue", core.CodeInternal, err)
	}
	key := jobsKey(d.Job.Tenant)
	_, err = q.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []any{"job", b}})
		p.XAck(ctx, key, Group, d.Receipt)
		p.XDel(ctx, key, d.Receipt)
		return nil
	})
	return mapError("redis.requeue", err)
}

// shares divides budget, the jobs a Fetch may still return, among
// tenants, each asking for no more than room(t): the reads of one pipeline
// all return at once, and a worker handed more jobs than it has slots, or
// more of a tenant than its share, holds them unstarted while they may be
// reclaimed by another worker and run twice. The budget is spread evenly,
// starting from a tenant that moves on with each Fetch, so that with more
// tenants than budget none always comes last. It yields (tenant, count)
// pairs with counts above zero, in tenants' order from the start.
func (q *Queue) shares(tenants []string, budget int, room func(string) int) iter.Seq2[string, int] {
	return func(yield func(string, int) bool) {
		if budget <= 0 || len(tenants) == 0 {
			return
		}
		want := make([]int, len(tenants))
		asking := 0
		for i, t := range tenants {
			if want[i] = room(t); want[i] > 0 {
				asking++
			}
		}
		q.mu.Lock()
		start := q.shareStart % len(tenants)
		q.shareStart++
		q.mu.Unlock()
		for k := range tenants {
			i := (start + k) % len(tenants)
			if want[i] <= 0 {
				continue
			}
			n := min(want[i], (budget+asking-1)/asking)
			budget -= n
			asking--
			if n > 0 && !yield(tenants[i], n) {
				return
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func tenantOfKey(key string) string {
	a := strings.IndexByte(key, '{')
	b := strings.IndexByte(key, '}')
	if a < 0 || b < a {
		return ""
	}
	return key[a+1 : b]
}

func (q *Queue) createGroup(ctx context.Context, tenant string) {
	_ = q.c.XGroupCreateMkStream(ctx, jobsKey(tenant), Group, "0").Err()
}

func (q *Queue) promoteDue(ctx context.Context, tenants []string) error {
	q.mu.Lock()
	if time.Since(q.promotedAt) < 50*time.Millisecond {
		q.mu.Unlock()
		return nil
	}
	q.promotedAt = time.Now()
	q.mu.Unlock()
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	pipe := q.c.Pipeline()
	for _, t := range tenants {
		promote.Eval(ctx, pipe, []string{delayedKey(t), jobsKey(t)}, now, 500)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return mapError("redis.promote", err)
	}
	return nil
}

func (q *Queue) reclaimDue(tenant string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	every := q.reclaimIdle / 4
	if time.Since(q.reclaimedAt[tenant]) < every {
		return false
	}
	q.reclaimedAt[tenant] = time.Now()
	return true
}

func (q *Queue) reclaim(ctx context.Context, consumer, tenant string, n int) ([]core.Delivery, error) {
	msgs, _, err := q.c.XAutoClaim(ctx, &goredis.XAutoClaimArgs{
		Stream: jobsKey(tenant), Group: Group, Consumer: consumer, MinIdle: q.reclaimIdle, Start: "0-0", Count: int64(n),
	}).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		if isNoGroup(err) {
			q.createGroup(ctx, tenant)
			return nil, nil
		}
		return nil, mapError("redis.reclaim", err)
	}
	return q.deliveries(ctx, tenant, []goredis.XStream{{Stream: jobsKey(tenant), Messages: msgs}}), nil
}

// deliveries decodes stream entries; an entry that does not decode is moved
// to the dead-letter stream as it is, rather than blocking the stream.
func (q *Queue) deliveries(ctx context.Context, tenant string, streams []goredis.XStream) []core.Delivery {
	var out []core.Delivery
	for _, s := range streams {
		for _, m := range s.Messages {
			raw, _ := m.Values["job"].(string)
			var j core.Job
			if err := json.Unmarshal([]byte(raw), &j); err != nil || j.Tenant != tenant {
				_, _ = q.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
					p.XAdd(ctx, &goredis.XAddArgs{Stream: dlqKey(tenant), Values: []any{"raw", raw, "reason", "undecodable job",
						"at", time.Now().UnixMilli()}})
					p.XAck(ctx, jobsKey(tenant), Group, m.ID)
					p.XDel(ctx, jobsKey(tenant), m.ID)
					return nil
				})
				continue
			}
			out = append(out, core.Delivery{Job: j, Receipt: m.ID})
		}
	}
	return out
}

type ackReq struct {
	tenant, id string
	done       chan error
}

// Ack implements core.JobQueue. Concurrent acknowledgements travel together
// in one transaction: one round trip per job would bound a worker pool's
// throughput by Redis's latency.
func (q *Queue) Ack(ctx context.Context, d core.Delivery) (err error) {
	if q.tracer != nil {
		var span trace.Span
		ctx, span = q.tracer.start(ctx, SpanAck)
		defer func() { endSpan(span, err) }()
	}
	r := ackReq{tenant: d.Job.Tenant, id: d.Receipt, done: make(chan error, 1)}
	select {
	case q.acks <- r:
	case <-q.stop:
		return core.Errorf(core.CodeUnavailable, "queue closed").WithOp("redis.Ack")
	case <-ctx.Done():
		return mapError("redis.Ack", ctx.Err())
	}
	select {
	case err := <-r.done:
		return err
	case <-q.ackDone:
		select {
		case err := <-r.done: // flushed just before closing
			return err
		default:
			return core.Errorf(core.CodeUnavailable, "queue closed").WithOp("redis.Ack")
		}
	case <-ctx.Done():
		return mapError("redis.Ack", ctx.Err())
	}
}

func (q *Queue) ackLoop() {
	defer close(q.ackDone)
	for {
		var batch []ackReq
		select {
		case r := <-q.acks:
			batch = append(batch, r)
		case <-q.stop:
			return
		}
	more:
		for len(batch) < 512 {
			select {
			case r := <-q.acks:
				batch = append(batch, r)
			default:
				break more
			}
		}
		ids := map[string][]string{}
		for _, r := range batch {
			ids[r.tenant] = append(ids[r.tenant], r.id)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := q.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			for t, list := range ids {
				p.XAck(ctx, jobsKey(t), Group, list...)
				p.XDel(ctx, jobsKey(t), list...)
			}
			return nil
		})
		cancel()
		err = mapError("redis.Ack", err)
		for _, r := range batch {
			r.done <- err
		}
	}
}

// Retry implements core.JobQueue: in one transaction the job leaves the
// stream and waits in the tenant's sorted set until at.
func (q *Queue) Retry(ctx context.Context, d core.Delivery, job core.Job, at time.Time) error {
	b, err := json.Marshal(job)
	if err != nil {
		return core.E("redis.Retry", core.CodeInternal, err)
	}
	key := jobsKey(job.Tenant)
	_, err = q.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.ZAdd(ctx, delayedKey(job.Tenant), goredis.Z{Score: float64(at.UnixMilli()), Member: b})
		if d.Receipt != "" {
			p.XAck(ctx, key, Group, d.Receipt)
			p.XDel(ctx, key, d.Receipt)
		}
		return nil
	})
	return mapError("redis.Retry", err)
}

// DeadLetter implements core.JobQueue. The reason and the job's last error
// are stored redacted of the job's target (core.RedactActionText), whoever
// wrote them: dead letters are listed and kept far longer than jobs run.
func (q *Queue) DeadLetter(ctx context.Context, d core.Delivery, job core.Job, reason string) error {
	reason = core.RedactActionText(reason, job.Action)
	job.LastError = core.RedactActionText(job.LastError, job.Action)
	b, err := json.Marshal(job)
	if err != nil {
		return core.E("redis.DeadLetter", core.CodeInternal, err)
	}
	key := jobsKey(job.Tenant)
	_, err = q.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.SAdd(ctx, tenantsKey, job.Tenant)
		p.XAdd(ctx, &goredis.XAddArgs{Stream: dlqKey(job.Tenant), Values: []any{"job", b, "reason", reason,
			"at", time.Now().UnixMilli()}})
		if d.Receipt != "" {
			p.XAck(ctx, key, Group, d.Receipt)
			p.XDel(ctx, key, d.Receipt)
		}
		return nil
	})
	return mapError("redis.DeadLetter", err)
}

// DeadLetters implements core.DeadLetters.
func (q *Queue) DeadLetters(ctx context.Context, tenant string, limit int) ([]core.DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	msgs, err := q.c.XRangeN(ctx, dlqKey(tenant), "-", "+", int64(limit)).Result()
	if err != nil {
		return nil, mapError("redis.DeadLetters", err)
	}
	out := make([]core.DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, decodeDeadLetter(m))
	}
	return out, nil
}

func decodeDeadLetter(m goredis.XMessage) core.DeadLetter {
	dl := core.DeadLetter{ID: m.ID}
	if s, ok := m.Values["job"].(string); ok {
		_ = json.Unmarshal([]byte(s), &dl.Job)
	}
	dl.Reason, _ = m.Values["reason"].(string)
	if s, ok := m.Values["at"].(string); ok {
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			dl.At = time.UnixMilli(ms).UTC()
		}
	}
	return dl
}

// Replay implements core.DeadLetters: each dead letter goes back to the
// tenant's stream with its attempts reset, in one transaction per job.
func (q *Queue) Replay(ctx context.Context, tenant string, ids []string) (int, error) {
	const op = "redis.Replay"
	var msgs []goredis.XMessage
	if len(ids) == 0 {
		all, err := q.c.XRange(ctx, dlqKey(tenant), "-", "+").Result()
		if err != nil {
			return 0, mapError(op, err)
		}
		msgs = all
	} else {
		for _, id := range ids {
			m, err := q.c.XRange(ctx, dlqKey(tenant), id, id).Result()
			if err != nil {
				return 0, mapError(op, err)
			}
			if len(m) == 0 {
				return 0, core.Errorf(core.CodeNotFound, "no dead letter %s", id).WithOp(op)
			}
			msgs = append(msgs, m...)
		}
	}
	q.createGroup(ctx, tenant)
	n := 0
	for _, m := range msgs {
		dl := decodeDeadLetter(m)
		if dl.Job.ID == "" || dl.Job.Tenant != tenant {
			continue // undecodable: stays for a human to look at
		}
		dl.Job.Attempt = 0
		b, err := json.Marshal(dl.Job)
		if err != nil {
			return n, core.E(op, core.CodeInternal, err)
		}
		_, err = q.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.XAdd(ctx, &goredis.XAddArgs{Stream: jobsKey(tenant), Values: []any{"job", b}})
			p.XDel(ctx, dlqKey(tenant), m.ID)
			return nil
		})
		if err != nil {
			return n, mapError(op, err)
		}
		n++
	}
	return n, nil
}
