package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/pyenv"
	"github.com/fraise-dev/fraise/test/stack"
)

// pythonSummary is what each script of test/e2e/python prints.
type pythonSummary struct {
	Passed   []string       `json:"passed"`
	Failures []string       `json:"failures"`
	Rows     int            `json:"rows"`
	Extra    map[string]any `json:"extra"`
}

// pythonEnv is the environment a script of test/e2e/python reads
// (fraiseenv.py): the ingress, the mTLS files and tokens of two tenants.
func pythonEnv(t testing.TB, s *stack.Stack) map[string]string {
	t.Helper()
	return map[string]string{
		"FRAISE_FLIGHT_URI":       "grpc+tls://" + s.Addrs.Gateway,
		"FRAISE_CA":               s.Certs.CACert,
		"FRAISE_CLIENT_CERT":      s.Certs.ClientCert,
		"FRAISE_CLIENT_KEY":       s.Certs.ClientKey,
		"FRAISE_TOKEN":            s.Token(t, demo.TenantAcme, "alice", "analyst"),
		"FRAISE_TOKEN_OTHER":      s.Token(t, demo.TenantGlobex, "carol", "analyst"),
		"FRAISE_TOKEN_ADMIN":      s.Token(t, demo.TenantAcme, "root", "admin"),
		"PYTHONDONTWRITEBYTECODE": "1",
	}
}

// runPython runs script against s and fails t with every assertion the
// script saw fail.
func runPython(t *testing.T, s *stack.Stack, script string, want int) pythonSummary {
	t.Helper()
	var sum pythonSummary
	runPythonEnv(t, script, pythonEnv(t, s), &sum, want)
	return sum
}

// runPythonEnv runs script with env into sum and fails t with every
// assertion the script saw fail, or when fewer than want passed.
func runPythonEnv(t *testing.T, script string, env map[string]string, sum *pythonSummary, want int) {
	t.Helper()
	pyenv.RunJSON(t, 3*time.Minute, "python/"+script, env, sum)
	for _, f := range sum.Failures {
		t.Error(f)
	}
	if len(sum.Passed) < want {
		t.Errorf("%s: got %d checks passed, want at least %d:\n%s", script, len(sum.Passed), want, strings.Join(sum.Passed, "\n"))
	}
}

// TestPythonClients drives Fraise's Flight and Flight SQL through the
// ingress, with mTLS and tenant tokens, from the Python clients analysts
// use: pyarrow's Flight client (Arrow's C++ one), pandas, polars, DuckDB
// and the ADBC Flight SQL driver.
func TestPythonClients(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	pyenv.Python(t)
	s := mustFlightStack(t)
	t.Run("pyarrow", func(t *testing.T) { runPython(t, s, "flight_pyarrow.py", 50) })
	t.Run("ADBC Flight SQL", func(t *testing.T) { runPython(t, s, "flightsql_adbc.py", 50) })
}
