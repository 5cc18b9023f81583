package core

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Operations a change event can record.
const (
	OpInsert = "INSERT"
	OpUpdate = "UPDATE"
	OpDelete = "DELETE"
)

// Position is a place in the outbox: events are ordered by generation, then
// by the writing transaction's id, then by their sequence within it.
type Position struct {
	// Generation counts the database's incarnations the outbox has seen:
	// a restore to an earlier point, or a failover that lost transactions,
	// starts a new one (Reconciler in core/observe), whose events come
	// after every earlier one's although the database hands out the lost
	// transactions' ids and sequence numbers again. 0 until then.
	Generation int    `json:"gen,omitempty"`
	XID        uint64 `json:"xid"`
	ID         int64  `json:"id"`
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool {
	if p.Generation != q.Generation {
		return p.Generation < q.Generation
	}
	return p.XID < q.XID || p.XID == q.XID && p.ID < q.ID
}

// String returns the stable name of the event at p: "xid-id" in
// generation 0 (as before generations existed, so jobs queued then keep
// their idempotency keys), "generation:xid-id" after.
func (p Position) String() string {
	if p.Generation == 0 {
		return fmt.Sprintf("%d-%d", p.XID, p.ID)
	}
	return fmt.Sprintf("%d:%d-%d", p.Generation, p.XID, p.ID)
}

// ChangeEvent is one committed change of one row of an observed table.
type ChangeEvent struct {
	Pos    Position        `json:"pos"`
	Tenant string          `json:"tenant"`
	Table  string          `json:"table"` // schema.table
	Op     string          `json:"op"`    // OpInsert, OpUpdate or OpDelete
	Key    json.RawMessage `json:"key"`   // the primary key columns, as an object
	// Before is the row before the change (null for inserts), After the row
	// after it (null for deletes).
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
	// Changed lists the columns an update changed (every column for
	// inserts and deletes).
	Changed []string  `json:"changed"`
	TxTime  time.Time `json:"tx_time"`
	// TraceParent is the W3C traceparent of the request whose transaction
	// made the change ("" when it was not traced). It is not part of the
	// event receivers see: the jobs the event causes carry it.
	TraceParent string `json:"-"`
}

// Action kinds.
const (
	ActionWebhook = "webhook"
	ActionSlack   = "slack"
	ActionEmail   = "email"
)

// Action is one thing a rule does for a matching event. Which fields apply
// depends on Kind: URL and Secret for webhooks, URL and Template for Slack,
// To, Subject and Template for email.
type Action struct {
	Kind     string   `json:"kind"`
	URL      string   `json:"url,omitempty"`
	Secret   string   `json:"secret,omitempty"`
	To       []string `json:"to,omitempty"`
	Subject  string   `json:"subject,omitempty"`
	Template string   `json:"template,omitempty"`
}

// Rule is a tenant's observer rule as stored.
type Rule struct {
	ID         string   `json:"id"`
	Tenant     string   `json:"tenant"`
	Name       string   `json:"name"`
	Table      string   `json:"table"`
	Operations []string `json:"operations"`
	Condition  string   `json:"condition"` // CEL; empty matches every event
	// Columns are the row's columns (JSON keys of key, before and after)
	// the rule captures: its condition, templates and actions see only
	// these. nil, for rules written before rules named their columns,
	// captures every column the schema does not protect (observe.Protection).
	Columns []string `json:"columns"`
	Actions []Action `json:"actions"`
	Enabled bool     `json:"enabled"`
	Version int      `json:"version"`
}

// Job is one action to run for one event. ID is the idempotency key: the
// same event, rule and action always give the same ID, however often the
// job is enqueued or retried, so a receiver can count it once.
type Job struct {
	ID       string      `json:"id"`
	Tenant   string      `json:"tenant"`
	RuleID   string      `json:"rule_id"`
	RuleName string      `json:"rule_name"`
	Action   Action      `json:"action"`
	Event    ChangeEvent `json:"event"`
	// Attempt counts the runs so far (0 before the first).
	Attempt    int       `json:"attempt"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	LastError  string    `json:"last_error,omitempty"`
	// TraceParent is the W3C traceparent of the request that committed
	// the event ("" when it was not traced): each run of the job continues
	// that trace, and so does the request a webhook target receives.
	TraceParent string `json:"traceparent,omitempty"`
}

// Delivery is a job a queue handed to a worker; Receipt identifies it to
// the queue when the worker reports the outcome.
type Delivery struct {
	Job     Job
	Receipt string
}

// EventLog is the outbox of committed change events.
type EventLog interface {
	// Read returns up to limit events after after, in order, only from
	// transactions that can no longer add events before them. Failures are
	// *Error with CodeUnavailable when the database cannot be reached.
	Read(ctx context.Context, after Position, limit int) ([]ChangeEvent, error)
	// Cursor returns the stored position of the named reader (zero when it
	// has none).
	Cursor(ctx context.Context, name string) (Position, error)
	// Advance stores pos as the named reader's position; it never moves a
	// cursor backwards.
	Advance(ctx context.Context, name string, pos Position) error
	// Wait blocks until new events may be available, d passes or ctx ends;
	// it returns ctx's error only.
	Wait(ctx context.Context, d time.Duration) error
}

// Generation describes the outbox's current generation (Position).
type Generation struct {
	// Number is the current generation; Previous the one before it (-1
	// when there is none).
	Number, Previous int
	// Current reports whether the database is still the incarnation the
	// generation was started on: false after a restore or a failover.
	Current bool
	// Reconciled reports whether the queue was reconciled with it.
	Reconciled bool
	// SystemID and Timeline identify the database's incarnation now.
	SystemID string
	Timeline int
}

// OutboxHistory is what reconciling the observers' queue with a restored
// database needs of the outbox.
type OutboxHistory interface {
	// Generation returns the outbox's current generation. Failures are
	// *Error with CodeUnavailable when the database cannot be reached.
	Generation(ctx context.Context) (Generation, error)
	// StartGeneration starts a new generation numbered above the current
	// one and above atLeast, unless the current one was started on the
	// database's present incarnation, and returns the current generation
	// either way. Events of the new generation come after every earlier
	// event, whatever transaction ids and sequence numbers they reuse.
	StartGeneration(ctx context.Context, atLeast int) (Generation, error)
	// Survived reports, for each event, whether its change is part of the
	// database's history (false for a change a restore lost).
	Survived(ctx context.Context, events []ChangeEvent) ([]bool, error)
	// Reconciled records generation n reconciled with the queue.
	Reconciled(ctx context.Context, n int) error
}

// QueueHistory is what reconciling the observers' queue with a restored
// database needs of the queue.
type QueueHistory interface {
	// MaxGeneration returns the highest outbox generation of an event
	// whose jobs the queue took.
	MaxGeneration(ctx context.Context) (int, error)
	// Sweep offers every job the queue holds (waiting, running, due later
	// or dead-lettered) to keep, in batches, and moves each one keep
	// refuses out of reach of the workers and of replay, recording it with
	// reason. It returns how many jobs it kept and how many it moved; it
	// may be run again after a failure.
	Sweep(ctx context.Context, keep func(ctx context.Context, jobs []Job) ([]bool, error), reason string) (kept, moved int, err error)
}

// RuleStore reads the rules dispatchers match events against.
type RuleStore interface {
	// EnabledRules returns every tenant's enabled rules.
	EnabledRules(ctx context.Context) ([]Rule, error)
	// Changed returns a channel that receives a value when rules may have
	// changed; it is closed when ctx ends.
	Changed(ctx context.Context) <-chan struct{}
	// RulesVersion returns a number that moves whenever any tenant's
	// rules change, as soon as the change commits: unlike Changed's
	// notification, it is in step with the events written after the
	// change.
	RulesVersion(ctx context.Context) (int64, error)
}

// JobQueue holds jobs per tenant until a worker completes them.
type JobQueue interface {
	// Enqueue adds jobs to their tenants' queues. Failures are *Error with
	// CodeUnavailable when the queue cannot be reached: nothing of a
	// failed call may be assumed enqueued, and enqueuing again is safe:
	// jobs of events at or before the last outbox position a tenant's
	// queue took are not added twice.
	Enqueue(ctx context.Context, jobs []Job) error
	// Fetch returns up to max jobs for this consumer, at most room(t) of
	// tenant t (none when 0), waiting at most block when there are none;
	// due retries are released and jobs of consumers that stopped
	// answering are reclaimed here too.
	Fetch(ctx context.Context, consumer string, max int, room func(tenant string) int, block time.Duration) ([]Delivery, error)
	// Ack completes a delivery.
	Ack(ctx context.Context, d Delivery) error
	// Retry completes a delivery and schedules job (its attempt counted) to
	// run again at at.
	Retry(ctx context.Context, d Delivery, job Job, at time.Time) error
	// DeadLetter completes a delivery and moves job to the tenant's
	// dead-letter stream with reason.
	DeadLetter(ctx context.Context, d Delivery, job Job, reason string) error
	// Backlog returns how many jobs wait or run for tenant.
	Backlog(ctx context.Context, tenant string) (int64, error)
}

// DeadLetters lists and replays a tenant's dead-lettered jobs.
type DeadLetters interface {
	// DeadLetters returns up to limit dead-lettered jobs of tenant, oldest first.
	DeadLetters(ctx context.Context, tenant string, limit int) ([]DeadLetter, error)
	// Replay moves the dead letters with the given ids (all when ids is
	// empty) back to the tenant's queue with their attempts reset, and
	// returns how many it moved.
	Replay(ctx context.Context, tenant string, ids []string) (int, error)
}

// DeadLetter is a job that will not be retried, and why.
type DeadLetter struct {
	ID     string    `json:"id"` // the dead-letter stream's entry id
	Job    Job       `json:"job"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Message is an action rendered for a notifier.
type Message struct {
	Kind string
	// IdempotencyKey is the job's ID; receivers deduplicate on it.
	IdempotencyKey string
	Tenant         string
	URL            string
	Secret         string
	To             []string
	Subject        string
	// Body is the JSON document for webhooks and Slack, the text of an email.
	Body []byte
}

// Notifier delivers messages of the kinds it handles.
type Notifier interface {
	// Notify delivers m once. Failures are *DeliveryError when the outcome
	// is known (permanent, or transient with a Retry-After), any other
	// error being transient.
	Notify(ctx context.Context, m Message) error
}

// ActionLimiter applies per-tenant, per-action-kind rate limits.
type ActionLimiter interface {
	// Allow reports whether tenant may run one more action of kind now,
	// and if not, how long to wait. An error means the limiter could not
	// answer; callers fail open.
	Allow(ctx context.Context, tenant, kind string) (bool, time.Duration, error)
}

// DeliveryError is a failed delivery whose nature is known.
type DeliveryError struct {
	// Permanent errors are never retried (an HTTP 4xx other than 408 and
	// 429, an address the mail server refuses).
	Permanent bool
	// RetryAfter is how long the target asked us to wait (0 when it did not).
	RetryAfter time.Duration
	// Status is the HTTP status or SMTP reply code, when there was one.
	Status int
	Err    error
}

// Error implements error.
func (e *DeliveryError) Error() string {
	kind := "transient"
	if e.Permanent {
		kind = "permanent"
	}
	if e.Status != 0 {
		return fmt.Sprintf("%s delivery failure (status %d): %v", kind, e.Status, e.Err)
	}
	return fmt.Sprintf("%s delivery failure: %v", kind, e.Err)
}

// Unwrap returns the cause.
func (e *DeliveryError) Unwrap() error { return e.Err }

// The statuses of a DeliveryAttempt.
const (
	// DeliveryDelivered: the target took the message.
	DeliveryDelivered = "delivered"
	// DeliveryFailed: the attempt failed and the job will be retried.
	DeliveryFailed = "failed"
	// DeliveryDead: the job was dead-lettered and will not be retried.
	DeliveryDead = "dead"
)

// DeliveryAttempt is the outcome of one run of a job, as a rule's recent
// deliveries show it.
type DeliveryAttempt struct {
	At    time.Time `json:"at"`
	JobID string    `json:"job_id"`
	Kind  string    `json:"kind"` // the action's kind
	// Status is DeliveryDelivered, DeliveryFailed or DeliveryDead.
	Status string `json:"status"`
	// Attempt counts the job's runs including this one (0 for a job
	// dead-lettered before its target was called).
	Attempt int `json:"attempt"`
	// HTTPStatus is the target's HTTP status or SMTP reply code on a
	// failure, when it answered one (0 otherwise).
	HTTPStatus int `json:"http_status,omitempty"`
	// Error is why the attempt failed, redacted of the action's secrets
	// (RedactActionText): the log is read by operators, not only the
	// rule's owner.
	Error string `json:"error,omitempty"`
}

// DeliveryLog keeps the recent delivery attempts of each rule of each
// tenant, a bounded number per rule, the oldest dropped first.
type DeliveryLog interface {
	// Record adds d to the recent attempts of tenant's rule (its ID).
	// Failures are *Error with CodeUnavailable when the log cannot be
	// reached; callers never fail a delivery over it.
	Record(ctx context.Context, tenant, rule string, d DeliveryAttempt) error
	// Recent returns up to n of the most recent attempts of tenant's
	// rule, newest first.
	Recent(ctx context.Context, tenant, rule string, n int) ([]DeliveryAttempt, error)
}
