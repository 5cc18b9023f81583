// Package security is the attack suite: a table of attacks on the whole
// stack (real Envoy as the ingress, extauthz, the server, PostgreSQL and
// Redis, started by test/stack), each run as an attacker would and checked
// for the refusal it must meet, with nothing leaked and nothing executed.
// `go test -v ./test/security/` prints one line per attack and a total;
// docs/security.md lists the attacks and says how to add one.
//
// The package holds tests only; this file carries its documentation.
package security
