package flight

import (
	"context"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// maxEndpoints bounds a dataset's endpoints.
const maxEndpoints = 64

// partitionable reports whether a column of type t can split an export
// into ranges: integers (split between their least and greatest values)
// and uuids (split evenly over the whole space, which random uuids fill
// evenly).
func partitionable(t Type) bool {
	if t.Array {
		return false
	}
	switch t.Kind {
	case KindInt2, KindInt4, KindInt8, KindUUID:
		return true
	}
	return false
}

// Part is one endpoint of an export split by ranges of a key column, all
// read in the snapshot the export took once: rows whose key is at least
// Lo (from the first: any, NULL included) and less than Hi (to the last:
// any). It travels in the endpoint's signed ticket, so a client can
// neither widen its range nor read another snapshot.
type Part struct {
	Snapshot string  `json:"snap"`
	Key      string  `json:"key"`
	Lo       *string `json:"lo,omitempty"`
	Hi       *string `json:"hi,omitempty"`
	Index    int     `json:"i"`
	Count    int     `json:"n"`
}

// snapshotRE is PostgreSQL's snapshot identifier as pg_export_snapshot
// writes it (hex digits and dashes): Export writes it into SET
// TRANSACTION SNAPSHOT, which takes no parameter.
var snapshotRE = regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{8}-[0-9]{1,10}$`)

// ValidSnapshot reports whether id has the form of a snapshot identifier.
func ValidSnapshot(id string) bool { return snapshotRE.MatchString(id) }

// Snapshot is a consistent snapshot of the database opened for one
// export's parts.
type Snapshot struct {
	// ID is what each part's transaction imports.
	ID string
	// Min and Max are the least and greatest key of the rows the tenant
	// sees in it, as text; both empty when it sees none.
	Min, Max string
}

// Partitioner is implemented by a Source that can read one export as
// several parts in parallel, all in one snapshot.
type Partitioner interface {
	// Snapshot opens a snapshot for the parts of an export of tenant and
	// reads in it the least and greatest value of keys, a statement of
	// one column: the export's rows' partition key. The snapshot stays
	// importable until as many parts as a part's Statement.Parts says
	// have begun, until Release, or until ttl has passed, whichever comes
	// first. Failures are *core.Error: CodeRateLimited when the tenant
	// already holds as many snapshots as it may (each holds a database
	// connection until its parts begin), others as for Source.Export.
	Snapshot(ctx context.Context, tenant string, keys Statement, ttl time.Duration) (Snapshot, error)
	// Release ends a snapshot early: one the export will not be split
	// over, or whose answer could not be sent.
	Release(id string)
}

// Split returns the query of each part of q over the snapshot s: at most
// parts ranges of key between s.Min and s.Max, each non-empty. It returns
// nil when the rows cannot be split (none, or one key).
func Split(q Query, key Column, s Snapshot, parts int) []Query {
	if s.Min == "" || s.Max == "" || parts < 2 {
		return nil
	}
	var bounds []string
	switch key.Type.Kind {
	case KindUUID:
		bounds = uuidBounds(parts)
	default:
		lo, err1 := strconv.ParseInt(s.Min, 10, 64)
		hi, err2 := strconv.ParseInt(s.Max, 10, 64)
		if err1 != nil || err2 != nil || hi <= lo {
			return nil
		}
		bounds = intBounds(lo, hi, parts)
	}
	if len(bounds) == 0 {
		return nil
	}
	out := make([]Query, len(bounds)+1)
	for i := range out {
		p := &Part{Snapshot: s.ID, Key: key.Name, Index: i, Count: len(out)}
		if i > 0 {
			p.Lo = &bounds[i-1]
		}
		if i < len(bounds) {
			p.Hi = &bounds[i]
		}
		out[i] = q
		out[i].Part = p
	}
	return out
}

// intBounds returns the parts-1 boundaries that cut [lo, hi] into parts
// ranges of (nearly) equal width, fewer when the span is narrower.
func intBounds(lo, hi int64, parts int) []string {
	span := new(big.Int).Sub(big.NewInt(hi), big.NewInt(lo))
	span.Add(span, big.NewInt(1))
	if span.Cmp(big.NewInt(int64(parts))) < 0 {
		parts = int(span.Int64())
	}
	var out []string
	for i := 1; i < parts; i++ {
		b := new(big.Int).Mul(span, big.NewInt(int64(i)))
		b.Quo(b, big.NewInt(int64(parts)))
		b.Add(b, big.NewInt(lo))
		out = append(out, b.String())
	}
	return out
}

// uuidBounds cuts the uuid space into parts equal ranges.
func uuidBounds(parts int) []string {
	space := new(big.Int).Lsh(big.NewInt(1), 128)
	var out []string
	for i := 1; i < parts; i++ {
		b := new(big.Int).Mul(space, big.NewInt(int64(i)))
		b.Quo(b, big.NewInt(int64(parts)))
		h := fmt.Sprintf("%032x", b)
		out = append(out, h[0:8]+"-"+h[8:12]+"-"+h[12:16]+"-"+h[16:20]+"-"+h[20:32])
	}
	return out
}

// SplitKey returns the column d's export of q by p may be split over,
// and whether it may be split at all: a limit applies to the whole
// result, an order other than the key's ascending would not survive
// reading parts side by side, and a key p may not filter by would reveal
// its values in the parts' tickets.
func SplitKey(d *Dataset, q Query, p core.Principal) (Column, bool) {
	if d.Endpoints < 2 || q.Limit != nil || q.Params > 0 || q.Part != nil {
		return Column{}, false
	}
	key, ok := d.Column(d.PartitionKey)
	if !ok || !key.Protection.Clear(p) {
		return Column{}, false
	}
	for i, o := range q.Order {
		if i > 0 || o.Column != key.Name || o.Desc {
			return Column{}, false
		}
	}
	return key, true
}
