package cli

import (
	"os"
	"testing"

	"github.com/fraise-dev/fraise/test/harness"
)

// TestMain stops the shared PostgreSQL the observer tests start, which
// would otherwise outlive every run of this package's tests.
func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
