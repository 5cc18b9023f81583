package flight

import (
	"context"

	"github.com/apache/arrow-go/v18/arrow"
)

// BatchLimits bound one record batch: at most Rows rows, and a batch is cut
// as soon as its values reach Bytes. Together they bound an export's memory
// whatever the size of its result.
type BatchLimits struct {
	Rows  int
	Bytes int
}

// Source is the port DoGet reads rows through.
type Source interface {
	// Export runs st in one transaction scoped to tenant and calls emit
	// with its rows as record batches within lim, in order. A batch is
	// released when emit returns, so emit must finish with it (write it)
	// first. Export stops at emit's first error and returns it; cancelling
	// ctx cancels the query. Failures are *core.Error: CodeInvalid for a
	// value the mapping cannot represent (NaN, infinity, a numeric beyond
	// its declared precision), CodeInternal when the view does not match
	// the dataset's declared types, CodeTimeout and CodeUnavailable as for
	// core.Querier.
	Export(ctx context.Context, tenant string, st Statement, lim BatchLimits, emit func(arrow.RecordBatch) error) error
}

// StatementSchema returns the Arrow schema of st's columns.
func StatementSchema(st Statement) (*arrow.Schema, error) { return schemaOf(st.Columns), nil }

func schemaOf(cols []Column) *arrow.Schema {
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		fields[i] = arrow.Field{
			Name: c.Name, Type: c.Type.ArrowType(), Nullable: true,
			Metadata: arrow.NewMetadata([]string{"fraise.pg_type"}, []string{c.Type.String()}),
		}
	}
	return arrow.NewSchema(fields, nil)
}
