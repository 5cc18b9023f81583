package coretest

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
)

// FlightSource is an in-memory flight.Source and flight.Partitioner whose
// every statement reads the integers 0 to Rows-1 (for ever when Rows is
// negative) into its first column, an int2, int4 or int8 (other columns
// are NULL), in batches of the limits' rows. It allocates through a
// checked allocator, so a test can see that every batch was released
// (Unreleased), and records each export's end. Set its fields before
// first use.
type FlightSource struct {
	Rows int64
	// Err, when set, fails every export before its first batch.
	Err error

	once sync.Mutex
	mem  *memory.CheckedAllocator

	mu        sync.Mutex
	exports   []flight.Statement
	ended     []error
	endedC    chan struct{}
	snapshots map[string]bool
	seq       int
}

var (
	_ flight.Source      = (*FlightSource)(nil)
	_ flight.Partitioner = (*FlightSource)(nil)
)

func (s *FlightSource) init() {
	s.once.Lock()
	defer s.once.Unlock()
	if s.mem == nil {
		s.mem = memory.NewCheckedAllocator(memory.NewGoAllocator())
		s.endedC = make(chan struct{}, 1024)
		s.snapshots = map[string]bool{}
	}
}

// Export implements flight.Source.
func (s *FlightSource) Export(ctx context.Context, _ string, st flight.Statement, lim flight.BatchLimits, emit func(arrow.RecordBatch) error) (err error) {
	s.init()
	s.mu.Lock()
	s.exports = append(s.exports, st)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.ended = append(s.ended, err)
		s.mu.Unlock()
		s.endedC <- struct{}{}
	}()
	if s.Err != nil {
		return s.Err
	}
	schema, _ := flight.StatementSchema(st)
	for id := int64(0); s.Rows < 0 || id < s.Rows; {
		if err := ctx.Err(); err != nil {
			return core.E("coretest.FlightSource", core.CodeUnavailable, err)
		}
		b := array.NewRecordBuilder(s.mem, schema)
		for n := 0; n < lim.Rows && (s.Rows < 0 || id < s.Rows); n++ {
			for i, f := range b.Fields() {
				switch fb := f.(type) {
				case *array.Int64Builder:
					if i == 0 {
						fb.Append(id)
						continue
					}
				case *array.Int32Builder:
					if i == 0 {
						fb.Append(int32(id))
						continue
					}
				case *array.Int16Builder:
					if i == 0 {
						fb.Append(int16(id))
						continue
					}
				}
				f.AppendNull()
			}
			id++
		}
		rec := b.NewRecordBatch()
		b.Release()
		err := emit(rec)
		rec.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

// Exports returns the statements Export was called with, in order.
func (s *FlightSource) Exports() []flight.Statement {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]flight.Statement(nil), s.exports...)
}

// AwaitEnd waits until n exports have ended, or d has passed, and
// returns the errors they ended with.
func (s *FlightSource) AwaitEnd(n int, d time.Duration) []error {
	s.init()
	deadline := time.After(d)
	for {
		s.mu.Lock()
		ended := append([]error(nil), s.ended...)
		s.mu.Unlock()
		if len(ended) >= n {
			return ended
		}
		select {
		case <-s.endedC:
		case <-deadline:
			return ended
		}
	}
}

// Unreleased returns the bytes of batches not released yet.
func (s *FlightSource) Unreleased() int {
	s.init()
	return s.mem.CurrentAlloc()
}

// Snapshot implements flight.Partitioner: the snapshot sees the keys 0 to
// Rows-1 (none when Rows is not positive).
func (s *FlightSource) Snapshot(_ context.Context, _ string, _ flight.Statement, _ time.Duration) (flight.Snapshot, error) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	snap := flight.Snapshot{ID: snapshotID(s.seq)}
	if s.Rows > 0 {
		snap.Min, snap.Max = "0", strconv.FormatInt(s.Rows-1, 10)
	}
	s.snapshots[snap.ID] = true
	return snap, nil
}

// Release implements flight.Partitioner.
func (s *FlightSource) Release(id string) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.snapshots, id)
}

// OpenSnapshots returns how many snapshots are open (taken and not
// released).
func (s *FlightSource) OpenSnapshots() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.snapshots)
}

// snapshotID has the form of PostgreSQL's snapshot identifiers, which
// flight.ValidSnapshot checks.
func snapshotID(n int) string {
	const hex = "0123456789ABCDEF"
	b := []byte("00000000-00000000-1")
	for i := 7; i >= 0 && n > 0; i-- {
		b[i] = hex[n%16]
		n /= 16
	}
	return string(b)
}
