package coretest_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core/coretest"
)

// The contract suites against the in-memory implementations; the adapters
// run the same suites against PostgreSQL and Redis.

func TestEventLogContract(t *testing.T) {
	coretest.TestEventLogContract(t, coretest.NewEventLogFixture)
}

func TestRuleStoreContract(t *testing.T) {
	coretest.TestRuleStoreContract(t, coretest.NewRuleStoreFixture)
}

func TestJobQueueContract(t *testing.T) {
	coretest.TestJobQueueContract(t, coretest.NewJobQueueFixture)
}

func TestPersistedDocumentsContract(t *testing.T) {
	coretest.TestPersistedDocumentsContract(t, coretest.NewPersistedDocumentsFixture)
}

// TestOnlyTestsImportCoretest fails when a package's own (non-test) code
// imports coretest: the fakes must never stand in for an adapter in a
// binary.
func TestOnlyTestsImportCoretest(t *testing.T) {
	const self = "github.com/fraise-dev/fraise/core/coretest"
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}={{join .Imports \",\"}}", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Fields(string(out)) {
		pkg, imports, _ := strings.Cut(line, "=")
		if pkg != self && slices.Contains(strings.Split(imports, ","), self) {
			t.Errorf("%s imports %s outside its tests", pkg, self)
		}
	}
}

func TestQueueHistoryContract(t *testing.T) {
	coretest.TestQueueHistoryContract(t, coretest.NewHistoryQueue)
}

func TestOutboxHistoryContract(t *testing.T) {
	coretest.TestOutboxHistoryContract(t, coretest.NewOutboxHistoryFixture)
}

func TestDeliveryLogContract(t *testing.T) {
	coretest.TestDeliveryLogContract(t, coretest.NewDeliveryLogFixture)
}
