// Package gctune keeps a floor under the garbage collector's heap goal, for
// the processes whose live heap is small while they allocate quickly
// (extauthz, the core): GOGC alone sets the goal in proportion to the live
// heap, so such a process collects many times a second, and the requests
// in flight during each collection's mark phase make its latency tail.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// DefaultHeapFloor is the heap goal Tune keeps at least: extauthz's live
// heap is a few MiB while each check allocates about 14 KiB, so a goal
// proportional to the live heap alone (GOGC=400: ~25 MiB) collects five or
// more times a second at 5,000 checks/s, and the checks in flight during
// each collection's mark phase make the latency tail. 64 MiB brings that
// to about once a second for a resident set that is small for a sidecar.
const DefaultHeapFloor = 64 << 20

// Tune sets the garbage collector's percentage after every collection
// so that the next heap goal is at least floor bytes and never less than
// minPercent of headroom over the live heap: a heap floor, as GOGC alone
// cannot express, without GOGC=off's risk of collecting continually once
// the live heap nears a memory limit (a GOMEMLIMIT in the environment
// still caps the heap as usual). It runs until stop, which restores the
// percentage it found; one tuner runs at a time, so a second call
// replaces the first's floor and percentage.
func Tune(floor uint64, minPercent int) (stop func()) {
	t := &gcTuner
	t.mu.Lock()
	t.floor, t.minPercent = floor, minPercent
	t.gen++
	gen := t.gen
	if !t.running {
		t.running = true
		t.chain++
		t.percent = debug.SetGCPercent(minPercent)
		t.restore = t.percent
		armGCTuner(t.chain)
	}
	t.tuneLocked()
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.gen == gen && t.running {
			t.running = false // the armed finalizer sees it and stops
			debug.SetGCPercent(t.restore)
		}
	}
}

var gcTuner gcTunerState

type gcTunerState struct {
	mu         sync.Mutex
	running    bool
	gen        uint64 // bumped by each Tune: only the latest one's stop stops
	chain      uint64 // bumped by each start: an older finalizer chain ends
	floor      uint64
	minPercent int
	percent    int // as last set
	restore    int // as found
	sample     [1]metrics.Sample
}

// armGCTuner runs tune after the next collection, by a finalizer on an
// object that only that collection frees, and re-arms itself until stop.
func armGCTuner(chain uint64) {
	sentinel := new([16]byte)
	runtime.SetFinalizer(sentinel, func(*[16]byte) {
		t := &gcTuner
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.running || t.chain != chain {
			return
		}
		t.tuneLocked()
		armGCTuner(chain)
	})
}

// tuneLocked sets GOGC from the live heap the last collection marked.
func (t *gcTunerState) tuneLocked() {
	t.sample[0].Name = "/gc/heap/live:bytes"
	metrics.Read(t.sample[:])
	live := uint64(0)
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	if p := gcPercentFor(live, t.floor, t.minPercent); p != t.percent {
		t.percent = p
		debug.SetGCPercent(p)
	}
}

// gcPercentFor is the GOGC whose heap goal, live*(1+GOGC/100), is at
// least floor, and at least minPercent.
func gcPercentFor(live, floor uint64, minPercent int) int {
	if live == 0 {
		live = 1 << 20 // before the first collection
	}
	p := minPercent
	if live < floor {
		// Round up, and bound it so a tiny live heap cannot overflow.
		if q := (floor-live)*100/live + 1; q > uint64(p) {
			p = int(min(q, 1_000_000))
		}
	}
	return p
}
