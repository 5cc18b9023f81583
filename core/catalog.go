package core

import "context"

// CatalogReader reads what a schema can be generated from: the relations
// and functions of the database's schemas, as the reading role sees them.
type CatalogReader interface {
	// ReadCatalog describes the relations (tables, views, materialized
	// views) and the functions of the given schemas, in name order.
	// Failures are *Error with CodeUnavailable or CodeInternal.
	ReadCatalog(ctx context.Context, schemas []string) (*DatabaseInfo, error)
}

// DatabaseInfo is a snapshot of a database's catalog.
type DatabaseInfo struct {
	Relations []RelationInfo
	Functions []FunctionDef
}

// RelationInfo describes one table or view.
type RelationInfo struct {
	Schema, Name string
	// Kind is table, view or matview.
	Kind string
	// Comment is COMMENT ON's text, "" for none.
	Comment string
	// Definition is a view's SELECT as pg_get_viewdef writes it.
	Definition string
	Columns    []ColumnInfo
	// RowSecurity is whether row-level security is enabled on a table.
	RowSecurity bool
	// ForeignKeys are a table's single-column foreign keys.
	ForeignKeys []ForeignKey
}

// ColumnInfo describes one column.
type ColumnInfo struct {
	Name, Type string // Type as format_type writes it
	NotNull    bool
	Comment    string
}

// ForeignKey is a single-column foreign key.
type ForeignKey struct {
	Column, RefSchema, RefTable, RefColumn string
}

// FunctionDef describes one function.
type FunctionDef struct {
	Schema, Name string
	Args         []string // types, as format_type writes them
	ArgNames     []string
	// Result are the columns of the composite type it returns, in order.
	Result  []ColumnInfo
	Comment string
	// Source is the function's body (prosrc).
	Source string
}
