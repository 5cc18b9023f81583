// Package observe turns committed database changes into actions: it matches
// change events against tenants' rules (CEL conditions, compiled once and
// cached), renders actions with injection-safe templates, and runs them
// reliably: a dispatcher that never advances past events it could not
// enqueue, and workers with exponential backoff and full jitter, a circuit
// breaker per target, per-action rate limits and a dead-letter stream.
// It reaches PostgreSQL, Redis and the targets only through core's ports.
package observe
