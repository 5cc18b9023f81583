// Package core is Fraise's domain root: the principal a request runs as, the
// application error type, request-scoped context values and the ports the
// capability packages (core/graphql, later core/observe and core/flight) use
// to reach the outside world. It imports no adapter, transport or Envoy type,
// so the rules it encodes can be tested without any of them.
package core
