package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/core"
)

var _ core.Catalog = (*DB)(nil)

// RelationColumns implements core.Catalog: it resolves name as the core's
// role does (search path included), so the check sees what queries will.
func (db *DB) RelationColumns(ctx context.Context, name string) (map[string]string, error) {
	const op = "postgres.RelationColumns"
	var exists bool
	if err := db.queryRow(ctx, "select to_regclass($1) is not null", name).Scan(&exists); err != nil {
		return nil, mapError(op, err)
	}
	if !exists {
		return nil, nil
	}
	return db.columns(ctx, op, `select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a
		where a.attrelid = to_regclass($1) and a.attnum > 0 and not a.attisdropped`, name)
}

// Function implements core.Catalog.
func (db *DB) Function(ctx context.Context, name string) (*core.FunctionInfo, error) {
	const op = "postgres.Function"
	var (
		args, names []string
		found       bool
	)
	// to_regproc is NULL for a missing name and for an overloaded one: a
	// mutation must name exactly one function. Names of input arguments
	// only (proargnames also names OUT arguments, after them).
	err := db.queryRow(ctx, `select true, coalesce((select array_agg(format_type(t, null) order by i)
			from unnest(p.proargtypes::oid[]) with ordinality u(t, i)), '{}'),
		coalesce((select array_agg(coalesce(p.proargnames[i], '') order by i)
			from generate_series(1, p.pronargs) i), '{}')
		from pg_proc p where p.oid = to_regproc($1)`, name).Scan(&found, &args, &names)
	if err == pgx.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, mapError(op, err)
	}
	cols, err := db.columns(ctx, op, `select a.attname, format_type(a.atttypid, a.atttypmod)
		from pg_proc p join pg_type t on t.oid = p.prorettype join pg_attribute a on a.attrelid = t.typrelid
		where p.oid = to_regproc($1) and a.attnum > 0 and not a.attisdropped`, name)
	if err != nil {
		return nil, err
	}
	return &core.FunctionInfo{Args: args, ArgNames: names, Result: cols}, nil
}

func (db *DB) columns(ctx context.Context, op, sql string, args ...any) (map[string]string, error) {
	rows, err := db.query(ctx, sql, args...)
	if err != nil {
		return nil, mapError(op, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, t string
		if err := rows.Scan(&n, &t); err != nil {
			return nil, mapError(op, err)
		}
		out[n] = t
	}
	if err := rows.Err(); err != nil {
		return nil, mapError(op, err)
	}
	return out, nil
}
