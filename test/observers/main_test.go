package observers_test

import (
	"os"
	"testing"

	"github.com/fraise-dev/fraise/test/harness"
)

// TestMain stops the PostgreSQL server the tests share once they end.
func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
