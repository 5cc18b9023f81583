package coretest_test

import (
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
