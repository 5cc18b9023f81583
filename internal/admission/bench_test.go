package admission_test

import (
	"context"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/internal/admission"
)

// The simulated request: it waits on the database for work, holding a
// buffer as a real request holds its rows, so that a backlog shows up as
// memory.
const (
	work        = 200 * time.Millisecond
	slots       = 100 // MaxConcurrent: saturation is slots/work = 500 req/s
	bufferBytes = 32 << 10
	memoryLimit = 64 << 20
)

var sink atomic.Pointer[[]byte]

func serve(c *admission.Controller, tenant string) (time.Duration, bool) {
	t0 := time.Now()
	release, err := c.Admit(context.Background(), tenant)
	if err != nil {
		return 0, false
	}
	defer release()
	buf := make([]byte, bufferBytes)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = byte(i)
	}
	time.Sleep(work) // the request's work, which admission schedules
	sink.Store(&buf)
	return time.Since(t0), true
}

type loadResult struct {
	p99              time.Duration
	admitted, refuse int
	peakHeap         uint64
}

// drive offers rate requests a second for d, open loop (arrivals do not
// wait for answers, as clients on the internet do not), from 8 tenants.
func drive(c *admission.Controller, rate int, d time.Duration) loadResult {
	var mu sync.Mutex
	var lat []time.Duration
	var refused atomic.Int64
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // the heap, sampled while the load runs
		defer close(sampled)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				metrics.Read(s)
				if v := s[0].Value.Uint64(); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	var wg sync.WaitGroup
	const tick = time.Millisecond
	perTick := float64(rate) * tick.Seconds()
	start := time.Now()
	owed := 0.0
	for n := 0; time.Since(start) < d; n++ {
		owed += perTick
		for ; owed >= 1; owed-- {
			wg.Add(1)
			go func(tenant string) {
				defer wg.Done()
				l, ok := serve(c, tenant)
				if !ok {
					refused.Add(1)
					return
				}
				mu.Lock()
				lat = append(lat, l)
				mu.Unlock()
			}(string(rune('a' + n%8)))
		}
		time.Sleep(time.Until(start.Add(time.Duration(n+1) * tick))) // open loop: the next tick's due time
	}
	wg.Wait()
	close(stop)
	<-sampled
	slices.Sort(lat)
	r := loadResult{admitted: len(lat), refuse: int(refused.Load()), peakHeap: peak.Load()}
	if len(lat) > 0 {
		r.p99 = lat[int(0.99*float64(len(lat)-1))]
	}
	return r
}

// BenchmarkAdmissionOverload drives the core's admission control at half
// its saturation, then at twice it, and reports the admitted requests' p99
// in both (want the overloaded one within twice the unloaded one), the
// refusals, and the peak heap (want it under the memory limit).
func BenchmarkAdmissionOverload(b *testing.B) {
	d := 10 * time.Second
	if os.Getenv("CI") != "" {
		d = 2 * time.Second
	}
	const saturation = int(slots * time.Second / work)
	for i := 0; i < b.N; i++ {
		c := admission.New(admission.Options{
			MaxConcurrent: slots, MaxPerTenant: slots / 2,
			// slots/4 waiters drain in a quarter of a work time: a burst
			// waits at most that long, and the queue timeout bounds the
			// rest, so an admitted request takes at most 1.25 work times
			// plus what the machine adds.
			MaxQueue: slots / 4, QueueTimeout: work / 4,
			MemoryLimit: memoryLimit, MemoryThreshold: 0.8,
		})
		runtime.GC()
		b.ResetTimer()
		calm := drive(c, saturation/2, d)
		loaded := drive(c, 2*saturation, d)
		b.StopTimer()
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(calm.p99), "unloaded-p99-ms")
		b.ReportMetric(ms(loaded.p99), "loaded-p99-ms")
		if calm.p99 > 0 {
			b.ReportMetric(float64(loaded.p99)/float64(calm.p99), "p99-ratio")
		}
		b.ReportMetric(float64(loaded.admitted)/d.Seconds(), "admitted-req/s")
		b.ReportMetric(float64(loaded.refuse)/d.Seconds(), "refused-req/s")
		b.ReportMetric(float64(max(calm.peakHeap, loaded.peakHeap))/(1<<20), "peak-heap-MB")
		// Refusals at half saturation happen only when the machine stalls
		// the simulated work (timers firing late hold slots longer): a
		// figure to read, not a property of the controller to assert.
		b.ReportMetric(float64(calm.refuse), "unloaded-refused")
		if loaded.p99 > 2*calm.p99 {
			b.Errorf("admitted p99 at twice saturation %v, want within twice the unloaded %v", loaded.p99, calm.p99)
		}
		if p := max(calm.peakHeap, loaded.peakHeap); p >= memoryLimit {
			b.Errorf("peak heap %d MB, want under the %d MB limit", p>>20, memoryLimit>>20)
		}
	}
}
