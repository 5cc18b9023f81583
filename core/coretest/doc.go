// Package coretest holds in-memory implementations of core's ports and the
// contract suites every implementation of a port must pass.
//
// The in-memory implementations (EventLog, RuleStore, Queue,
// PersistedDocuments, Clock) stand in for PostgreSQL and Redis in unit
// tests of the capabilities that use the ports, so those tests do not each
// write their own fakes. They are trustworthy stand-ins because the same
// contract suites (EventLogContract, RuleStoreContract, JobQueueContract,
// PersistedDocumentsContract) run against them here and against the
// adapters in adapters/postgres and adapters/redis: a behaviour the fakes
// get wrong shows up as a contract failure, not as a unit test that passes
// against a fake and fails against the database.
//
// Tests only: nothing outside _test.go files may import this package.
package coretest
