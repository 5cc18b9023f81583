package redis_test

import (
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core/coretest"
)

// TestJobQueueContract runs the queue ports' contract suite (core/coretest)
// against Redis, each case on its own server: the same cases the
// in-memory queue passes.
func TestJobQueueContract(t *testing.T) {
	const idle = 300 * time.Millisecond
	coretest.TestJobQueueContract(t, func(t *testing.T) coretest.JobQueueFixture {
		return coretest.JobQueueFixture{Queue: mustQueue(t, idle), ReclaimIdle: idle}
	})
}

// TestQueueHistoryContract runs core.QueueHistory's contract suite against
// Redis.
func TestQueueHistoryContract(t *testing.T) {
	coretest.TestQueueHistoryContract(t, func(t *testing.T) coretest.HistoryQueue { return mustQueue(t, time.Minute) })
}
