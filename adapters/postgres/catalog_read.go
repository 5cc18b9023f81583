package postgres

import (
	"context"

	"github.com/fraise-dev/fraise/core"
)

var _ core.CatalogReader = (*DB)(nil)

// ReadCatalog implements core.CatalogReader.
func (db *DB) ReadCatalog(ctx context.Context, schemas []string) (*core.DatabaseInfo, error) {
	const op = "postgres.ReadCatalog"
	out := &core.DatabaseInfo{}
	rows, err := db.query(ctx, `select c.oid::int8, n.nspname, c.relname,
			case c.relkind when 'v' then 'view' when 'm' then 'matview' else 'table' end,
			coalesce(obj_description(c.oid, 'pg_class'), ''),
			case when c.relkind in ('v', 'm') then coalesce(pg_get_viewdef(c.oid, true), '') else '' end,
			c.relrowsecurity
		from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where n.nspname = any($1) and c.relkind in ('r', 'p', 'v', 'm') and has_table_privilege(c.oid, 'select')
		order by n.nspname, c.relname`, schemas)
	if err != nil {
		return nil, mapError(op, err)
	}
	index := map[int64]int{}
	for rows.Next() {
		var oid int64
		var r core.RelationInfo
		if err := rows.Scan(&oid, &r.Schema, &r.Name, &r.Kind, &r.Comment, &r.Definition, &r.RowSecurity); err != nil {
			rows.Close()
			return nil, mapError(op, err)
		}
		index[oid] = len(out.Relations)
		out.Relations = append(out.Relations, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, mapError(op, err)
	}
	oids := make([]int64, 0, len(index))
	for oid := range index {
		oids = append(oids, oid)
	}
	rows, err = db.query(ctx, `select a.attrelid::int8, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
			coalesce(col_description(a.attrelid, a.attnum), '')
		from pg_attribute a where a.attrelid = any($1::int8[]::oid[]) and a.attnum > 0 and not a.attisdropped
		order by a.attrelid, a.attnum`, oids)
	if err != nil {
		return nil, mapError(op, err)
	}
	for rows.Next() {
		var oid int64
		var c core.ColumnInfo
		if err := rows.Scan(&oid, &c.Name, &c.Type, &c.NotNull, &c.Comment); err != nil {
			rows.Close()
			return nil, mapError(op, err)
		}
		r := &out.Relations[index[oid]]
		r.Columns = append(r.Columns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, mapError(op, err)
	}
	rows, err = db.query(ctx, `select k.conrelid::int8, a.attname, rn.nspname, rc.relname, ra.attname
		from pg_constraint k
		join pg_attribute a on a.attrelid = k.conrelid and a.attnum = k.conkey[1]
		join pg_class rc on rc.oid = k.confrelid join pg_namespace rn on rn.oid = rc.relnamespace
		join pg_attribute ra on ra.attrelid = k.confrelid and ra.attnum = k.confkey[1]
		where k.contype = 'f' and cardinality(k.conkey) = 1 and k.conrelid = any($1::int8[]::oid[])
		order by k.conrelid, a.attnum`, oids)
	if err != nil {
		return nil, mapError(op, err)
	}
	for rows.Next() {
		var oid int64
		var fk core.ForeignKey
		if err := rows.Scan(&oid, &fk.Column, &fk.RefSchema, &fk.RefTable, &fk.RefColumn); err != nil {
			rows.Close()
			return nil, mapError(op, err)
		}
		r := &out.Relations[index[oid]]
		r.ForeignKeys = append(r.ForeignKeys, fk)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, mapError(op, err)
	}
	rows, err = db.query(ctx, `select n.nspname, p.proname,
			coalesce((select array_agg(format_type(t, null) order by i) from unnest(p.proargtypes::oid[]) with ordinality u(t, i)), '{}'),
			coalesce((select array_agg(coalesce(p.proargnames[i], '') order by i) from generate_series(1, p.pronargs) i), '{}'),
			coalesce((select array_agg(a.attname::text order by a.attnum) from pg_attribute a
				where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped), '{}'),
			coalesce((select array_agg(format_type(a.atttypid, a.atttypmod) order by a.attnum) from pg_attribute a
				where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped), '{}'),
			coalesce(obj_description(p.oid, 'pg_proc'), ''), coalesce(p.prosrc, '')
		from pg_proc p join pg_namespace n on n.oid = p.pronamespace join pg_type t on t.oid = p.prorettype
		where n.nspname = any($1) and p.prokind = 'f' and t.typrelid <> 0 and has_function_privilege(p.oid, 'execute')
		order by n.nspname, p.proname`, schemas)
	if err != nil {
		return nil, mapError(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var f core.FunctionDef
		var names, types []string
		if err := rows.Scan(&f.Schema, &f.Name, &f.Args, &f.ArgNames, &names, &types, &f.Comment, &f.Source); err != nil {
			return nil, mapError(op, err)
		}
		for i := range names {
			f.Result = append(f.Result, core.ColumnInfo{Name: names[i], Type: types[i]})
		}
		out.Functions = append(out.Functions, f)
	}
	if err := rows.Err(); err != nil {
		return nil, mapError(op, err)
	}
	return out, nil
}
