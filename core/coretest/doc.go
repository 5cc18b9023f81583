// Package coretest holds in-memory implementations of core's ports and the
// contract suites every implementation of a port must pass.
//
// The in-memory implementations stand in for PostgreSQL and Redis in unit
// tests of the capabilities that use the ports, so those tests do not each
// write their own fakes: EventLog (core.EventLog and core.OutboxHistory,
// with Restore to simulate a point-in-time restore), RuleStore, Queue
// (core.JobQueue, core.DeadLetters and core.QueueHistory),
// PersistedDocuments, DeliveryLog, FlightSource (flight.Source and
// flight.Partitioner, with no contract suite yet: adapters/postgres tests
// its Exporter on a real database) and a manual Clock (extauthz's ports
// have theirs in extauthz/authztest). Each is safe for concurrent use.
//
// They are trustworthy stand-ins because the same contract suites run
// against them here and against the adapters in adapters/postgres and
// adapters/redis: TestEventLogContract, TestOutboxHistoryContract,
// TestRuleStoreContract, TestJobQueueContract, TestQueueHistoryContract,
// TestPersistedDocumentsContract and TestDeliveryLogContract. Each takes the *testing.T of the caller's test
// and a constructor called once per case (the cases run in parallel), so
// a behaviour a fake gets wrong shows up as a contract failure, not as a
// unit test that passes against the fake and fails against the database.
//
// Tests only: nothing outside _test.go files may import this package
// (TestOnlyTestsImportCoretest).
package coretest
