//go:build race

package e2e_test

// raceDetector is true under -race. envoyproxy/ratelimit's SetConfig
// writes its settings fields under a lock that ShouldRateLimit's readers
// never take (docs/ratelimit.md): reloading limits while requests flow is
// a data race in that module, not in Fraise. Tests that reload limits
// run without -race and skip under it.
const raceDetector = true
