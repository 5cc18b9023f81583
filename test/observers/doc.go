// Package observers tests the observer pipeline (core/observe.Pipeline)
// on its real adapters: PostgreSQL's outbox, a Redis queue, webhook
// receivers over HTTP and an SMTP server, all started on loopback by
// test/observers/obstest, which cmd/fraise/cli's tests share. What `fraise serve` adds (building the adapters from
// fraise.toml, the metrics' names) is tested in cmd/fraise/cli.
package observers
