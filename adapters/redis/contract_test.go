package redis_test

import (
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/redis"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/test/harness"
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

// TestDeliveryLogContract runs core.DeliveryLog's contract suite against
// Redis, with a small log so that trimming shows.
func TestDeliveryLogContract(t *testing.T) {
	coretest.TestDeliveryLogContract(t, func(t *testing.T) coretest.DeliveryLogFixture {
		rd := harness.StartRedis(t)
		q := redis.New(redis.Options{Addr: rd.Addr, DeliveryLogSize: 5})
		t.Cleanup(func() { q.Close() })
		return coretest.DeliveryLogFixture{Log: q, Cap: 5}
	})
}
