// Package loadgen generates HTTP load against servers a test or benchmark
// started on this machine, and measures their answers: a closed loop (Run,
// RunFunc: a fixed number of workers, each with one request in flight) for
// throughput, an open loop (Open: arrivals at a constant rate, whatever the
// answers) for latency under a given load and for overload, whose backlog a
// closed loop hides; and LeanTransport, an HTTP/1.1 client cheap enough in
// CPU that a generator sharing two cores with the server measures the
// server rather than itself, which times each answer on its arrival at the
// socket (WithArrival) rather than when a starved goroutine read it.
//
// It lives apart from the benchmarks of test/bench so that any test can
// load a server with it, and so that its own unit tests run without the
// benchmarks' stack. Every loop refuses targets that are not loopback
// addresses (ErrNotLoopback): it must never load anything but the servers
// its caller started.
package loadgen
