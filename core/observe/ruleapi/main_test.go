package ruleapi_test

import (
	"os"
	"testing"

	"github.com/fraise-dev/fraise/test/harness"
)

// TestMain stops the shared PostgreSQL the rule API's tests run on.
func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
