package postgres

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/core"
)

// The channels the capture trigger and the rules table notify.
const (
	outboxChannel = "fraise_observer_outbox"
	rulesChannel  = "fraise_observer_rules"
)

// EventLog reads the observer outbox (core.EventLog) and the observer rules
// (core.RuleStore). One LISTEN connection, kept open and re-opened after a
// failure, wakes readers on new events and rule changes.
type EventLog struct {
	db  *DB
	log *slog.Logger

	wake     chan struct{} // new events may be there
	mu       sync.Mutex
	subs     map[chan struct{}]struct{} // rule-change subscribers
	prunedAt time.Time
	cancel   context.CancelFunc
	done     chan struct{}
}

var (
	_ core.EventLog  = (*EventLog)(nil)
	_ core.RuleStore = (*EventLog)(nil)
)

// NewEventLog starts listening for notifications on db; Close stops it.
func NewEventLog(db *DB, log *slog.Logger) *EventLog {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &EventLog{db: db, log: log, wake: make(chan struct{}, 1), subs: map[chan struct{}]struct{}{},
		cancel: cancel, done: make(chan struct{})}
	go l.listen(ctx)
	return l
}

// Close stops listening.
func (l *EventLog) Close() {
	l.cancel()
	<-l.done
}

func (l *EventLog) listen(ctx context.Context) {
	defer close(l.done)
	for ctx.Err() == nil {
		err := l.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("observer listener lost its connection; reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (l *EventLog) listenOnce(ctx context.Context) error {
	pc, err := l.db.acquire(ctx)
	if err != nil {
		return err
	}
	// The connection leaves the pool: it is stateful (LISTEN) and closed
	// on any error rather than handed to a request.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "listen "+outboxChannel+"; listen "+rulesChannel); err != nil {
		return err
	}
	// Anything may have happened while we were not listening.
	l.poke()
	l.rulesChanged()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch n.Channel {
		case outboxChannel:
			l.poke()
		case rulesChannel:
			l.rulesChanged()
		}
	}
}

func (l *EventLog) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *EventLog) rulesChanged() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Wait implements core.EventLog.
func (l *EventLog) Wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-l.wake:
	case <-t.C:
	}
	return nil
}

// Read implements core.EventLog.
func (l *EventLog) Read(ctx context.Context, after core.Position, limit int) ([]core.ChangeEvent, error) {
	const op = "postgres.EventLog.Read"
	rows, err := l.db.query(ctx, `select generation, xid::text, id, tenant_id::text, table_name, op, key, before, after, changed, tx_time,
		coalesce(traceparent, '') from fraise.observer_read($1, $2::text::xid8, $3, $4)`, after.Generation, strconv.FormatUint(after.XID, 10), after.ID, limit)
	if err != nil {
		return nil, mapError(op, err)
	}
	defer rows.Close()
	var out []core.ChangeEvent
	for rows.Next() {
		var (
			e          core.ChangeEvent
			xid        string
			key, b, a  []byte
			changed    []string
			txTime     time.Time
			table, opn string
		)
		if err := rows.Scan(&e.Pos.Generation, &xid, &e.Pos.ID, &e.Tenant, &table, &opn, &key, &b, &a, &changed, &txTime, &e.TraceParent); err != nil {
			return nil, mapError(op, err)
		}
		if e.Pos.XID, err = strconv.ParseUint(xid, 10, 64); err != nil {
			return nil, core.E(op, core.CodeInternal, err)
		}
		e.Table, e.Op, e.Changed, e.TxTime = table, opn, changed, txTime.UTC()
		e.Key = json.RawMessage(key)
		e.Before = rawOrNull(b)
		e.After = rawOrNull(a)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, mapError(op, err)
	}
	return out, nil
}

func rawOrNull(b []byte) json.RawMessage {
	if b == nil {
		return json.RawMessage("null")
	}
	return json.RawMessage(b)
}

// Cursor implements core.EventLog.
func (l *EventLog) Cursor(ctx context.Context, name string) (core.Position, error) {
	var (
		p   core.Position
		xid string
		n   int64
	)
	err := l.db.queryRow(ctx, "select generation, xid::text, id, pending from fraise.observer_position($1)", name).
		Scan(&p.Generation, &xid, &p.ID, &n)
	if err != nil {
		return p, mapError("postgres.EventLog.Cursor", err)
	}
	p.XID, err = strconv.ParseUint(xid, 10, 64)
	return p, err
}

// Pending returns how many events wait behind the named cursor.
func (l *EventLog) Pending(ctx context.Context, name string) (int64, error) {
	var n int64
	err := l.db.queryRow(ctx, "select pending from fraise.observer_position($1)", name).Scan(&n)
	if err != nil {
		return 0, mapError("postgres.EventLog.Pending", err)
	}
	return n, nil
}

// OldestPending returns when the first event behind the named cursor was
// written; ok is false when none waits.
func (l *EventLog) OldestPending(ctx context.Context, name string) (t time.Time, ok bool, err error) {
	var ts *time.Time
	if err := l.db.queryRow(ctx, "select fraise.observer_oldest_pending($1)", name).Scan(&ts); err != nil {
		return time.Time{}, false, mapError("postgres.EventLog.OldestPending", err)
	}
	if ts == nil {
		return time.Time{}, false, nil
	}
	return *ts, true, nil
}

// Advance implements core.EventLog. It deletes the events every cursor has
// passed at most once a second: deleting on every batch costs the
// dispatcher a round of index maintenance per batch.
func (l *EventLog) Advance(ctx context.Context, name string, pos core.Position) error {
	l.mu.Lock()
	prune := time.Since(l.prunedAt) >= time.Second
	if prune {
		l.prunedAt = time.Now()
	}
	l.mu.Unlock()
	_, err := l.db.exec(ctx, "select fraise.observer_advance($1, $2, $3::text::xid8, $4, $5)",
		name, pos.Generation, strconv.FormatUint(pos.XID, 10), pos.ID, prune)
	if err != nil {
		return mapError("postgres.EventLog.Advance", err)
	}
	return nil
}

// Lead holds the dispatcher lock for name while fn runs: only one
// dispatcher reads the outbox at a time, the others wait their turn. It
// returns fn's error, or ctx's when ctx ends before the lock is free.
func (l *EventLog) Lead(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	const op = "postgres.EventLog.Lead"
	for {
		pc, err := l.db.acquire(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		var ok bool
		err = pc.QueryRow(ctx, "select pg_try_advisory_lock(hashtext('fraise.observer.' || $1))", name).Scan(&ok)
		switch {
		case err != nil:
			// Whether the lock was taken before the error is unknown:
			// closing the session is what surely releases it.
			c := pc.Hijack()
			c.Close(context.WithoutCancel(ctx))
		case !ok:
			// Not leading, and the session holds no lock: its connection
			// goes back to the pool rather than being closed, or a standby
			// would open a connection four times a second for as long as
			// it waits.
			pc.Release()
		default:
			conn := pc.Hijack()
			// The lock lives as long as the session: closing the
			// connection, or losing it, releases it.
			lctx, cancel := context.WithCancel(ctx)
			watched := make(chan struct{})
			go func() { defer close(watched); watchConn(lctx, conn, cancel) }()
			err = fn(lctx)
			cancel()
			<-watched
			conn.Close(context.WithoutCancel(ctx))
			return err
		}
		if err != nil && ctx.Err() == nil {
			l.log.Warn("observer dispatcher lock", "op", op, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// watchConn cancels when conn stops answering: the lock went with it.
func watchConn(ctx context.Context, conn *pgx.Conn, cancel context.CancelFunc) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil && ctx.Err() == nil {
				cancel()
				return
			}
		}
	}
}
