// Package observe turns committed database changes into actions: it matches
// change events against tenants' rules (CEL conditions, compiled once and
// cached), renders actions with injection-safe templates, and runs them
// reliably: a dispatcher that never advances past events it could not
// enqueue, and workers with exponential backoff and full jitter, a circuit
// breaker per target, per-action rate limits and a dead-letter stream.
// Pipeline assembles them into the observers' application service (what
// a process runs), Rules manages the rules and DeadLetterList what an
// operator sees of the dead letters. It reaches PostgreSQL, Redis and the
// targets only through core's ports, and reports through Metrics.
package observe
