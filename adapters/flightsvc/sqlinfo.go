package flightsvc

import (
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	pb "github.com/apache/arrow-go/v18/arrow/flight/gen/flight"
)

// PostgreSQL's limit on identifiers (NAMEDATALEN - 1), which every
// dataset, schema and column name obeys.
const maxIdentifier = int64(63)

// sqlInfo is the answer to every SqlInfo id of Flight SQL's protocol
// (FlightSql.proto), each with the type the protocol gives it: BI tools'
// JDBC and ODBC drivers read them all on connect, and a server that lacks
// one fails the whole GetSqlInfo. What Fraise cannot do is said so:
// statements are a read-only subset of SELECT (no joins, grouping,
// subqueries, unions, functions or transactions), lengths not limited
// beyond PostgreSQL's are 0 ("no limit or unknown").
func sqlInfo(version string) map[flightsql.SqlInfo]any {
	info := map[pb.SqlInfo]any{
		pb.SqlInfo_FLIGHT_SQL_SERVER_NAME:                          "Fraise",
		pb.SqlInfo_FLIGHT_SQL_SERVER_VERSION:                       version,
		pb.SqlInfo_FLIGHT_SQL_SERVER_ARROW_VERSION:                 "18",
		pb.SqlInfo_FLIGHT_SQL_SERVER_READ_ONLY:                     true,
		pb.SqlInfo_FLIGHT_SQL_SERVER_SQL:                           true,
		pb.SqlInfo_FLIGHT_SQL_SERVER_SUBSTRAIT:                     false,
		pb.SqlInfo_FLIGHT_SQL_SERVER_SUBSTRAIT_MIN_VERSION:         "",
		pb.SqlInfo_FLIGHT_SQL_SERVER_SUBSTRAIT_MAX_VERSION:         "",
		pb.SqlInfo_FLIGHT_SQL_SERVER_TRANSACTION:                   int32(pb.SqlSupportedTransaction_SQL_SUPPORTED_TRANSACTION_NONE),
		pb.SqlInfo_FLIGHT_SQL_SERVER_CANCEL:                        false,
		pb.SqlInfo_FLIGHT_SQL_SERVER_BULK_INGESTION:                false,
		pb.SqlInfo_FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED: false,
		pb.SqlInfo_FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT:             int32(PreparedTTL.Milliseconds()),
		pb.SqlInfo_FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT:           int32(0),
		pb.SqlInfo_SQL_DDL_CATALOG:                                 false,
		pb.SqlInfo_SQL_DDL_SCHEMA:                                  false,
		pb.SqlInfo_SQL_DDL_TABLE:                                   false,
		pb.SqlInfo_SQL_IDENTIFIER_CASE:                             int32(pb.SqlSupportedCaseSensitivity_SQL_CASE_SENSITIVITY_LOWERCASE),
		pb.SqlInfo_SQL_IDENTIFIER_QUOTE_CHAR:                       `"`,
		// Quoted identifiers keep their case, which the enum has no name for.
		pb.SqlInfo_SQL_QUOTED_IDENTIFIER_CASE:                                    int32(pb.SqlSupportedCaseSensitivity_SQL_CASE_SENSITIVITY_UNKNOWN),
		pb.SqlInfo_SQL_ALL_TABLES_ARE_SELECTABLE:                                 true,
		pb.SqlInfo_SQL_NULL_ORDERING:                                             int32(pb.SqlNullOrdering_SQL_NULLS_SORTED_HIGH),
		pb.SqlInfo_SQL_KEYWORDS:                                                  []string{"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "ORDER", "BY", "ASC", "DESC", "LIMIT", "TRUE", "FALSE"},
		pb.SqlInfo_SQL_NUMERIC_FUNCTIONS:                                         []string{},
		pb.SqlInfo_SQL_STRING_FUNCTIONS:                                          []string{},
		pb.SqlInfo_SQL_SYSTEM_FUNCTIONS:                                          []string{},
		pb.SqlInfo_SQL_DATETIME_FUNCTIONS:                                        []string{},
		pb.SqlInfo_SQL_SEARCH_STRING_ESCAPE:                                      `\`,
		pb.SqlInfo_SQL_EXTRA_NAME_CHARACTERS:                                     "",
		pb.SqlInfo_SQL_SUPPORTS_COLUMN_ALIASING:                                  false,
		pb.SqlInfo_SQL_NULL_PLUS_NULL_IS_NULL:                                    true,
		pb.SqlInfo_SQL_SUPPORTS_CONVERT:                                          map[int32][]int32{},
		pb.SqlInfo_SQL_SUPPORTS_TABLE_CORRELATION_NAMES:                          false,
		pb.SqlInfo_SQL_SUPPORTS_DIFFERENT_TABLE_CORRELATION_NAMES:                false,
		pb.SqlInfo_SQL_SUPPORTS_EXPRESSIONS_IN_ORDER_BY:                          false,
		pb.SqlInfo_SQL_SUPPORTS_ORDER_BY_UNRELATED:                               true,
		pb.SqlInfo_SQL_SUPPORTED_GROUP_BY:                                        int32(0),
		pb.SqlInfo_SQL_SUPPORTS_LIKE_ESCAPE_CLAUSE:                               false,
		pb.SqlInfo_SQL_SUPPORTS_NON_NULLABLE_COLUMNS:                             false,
		pb.SqlInfo_SQL_SUPPORTED_GRAMMAR:                                         int32(1 << pb.SupportedSqlGrammar_SQL_MINIMUM_GRAMMAR),
		pb.SqlInfo_SQL_ANSI92_SUPPORTED_LEVEL:                                    int32(0),
		pb.SqlInfo_SQL_SUPPORTS_INTEGRITY_ENHANCEMENT_FACILITY:                   false,
		pb.SqlInfo_SQL_OUTER_JOINS_SUPPORT_LEVEL:                                 int32(pb.SqlOuterJoinsSupportLevel_SQL_JOINS_UNSUPPORTED),
		pb.SqlInfo_SQL_SCHEMA_TERM:                                               "schema",
		pb.SqlInfo_SQL_PROCEDURE_TERM:                                            "procedure",
		pb.SqlInfo_SQL_CATALOG_TERM:                                              "catalog",
		pb.SqlInfo_SQL_CATALOG_AT_START:                                          true,
		pb.SqlInfo_SQL_SCHEMAS_SUPPORTED_ACTIONS:                                 int32(0),
		pb.SqlInfo_SQL_CATALOGS_SUPPORTED_ACTIONS:                                int32(0),
		pb.SqlInfo_SQL_SUPPORTED_POSITIONED_COMMANDS:                             int32(0),
		pb.SqlInfo_SQL_SELECT_FOR_UPDATE_SUPPORTED:                               false,
		pb.SqlInfo_SQL_STORED_PROCEDURES_SUPPORTED:                               false,
		pb.SqlInfo_SQL_SUPPORTED_SUBQUERIES:                                      int32(0),
		pb.SqlInfo_SQL_CORRELATED_SUBQUERIES_SUPPORTED:                           false,
		pb.SqlInfo_SQL_SUPPORTED_UNIONS:                                          int32(0),
		pb.SqlInfo_SQL_MAX_BINARY_LITERAL_LENGTH:                                 int64(0),
		pb.SqlInfo_SQL_MAX_CHAR_LITERAL_LENGTH:                                   int64(0),
		pb.SqlInfo_SQL_MAX_COLUMN_NAME_LENGTH:                                    maxIdentifier,
		pb.SqlInfo_SQL_MAX_COLUMNS_IN_GROUP_BY:                                   int64(0),
		pb.SqlInfo_SQL_MAX_COLUMNS_IN_INDEX:                                      int64(0),
		pb.SqlInfo_SQL_MAX_COLUMNS_IN_ORDER_BY:                                   int64(0),
		pb.SqlInfo_SQL_MAX_COLUMNS_IN_SELECT:                                     int64(0),
		pb.SqlInfo_SQL_MAX_COLUMNS_IN_TABLE:                                      int64(1600), // PostgreSQL's
		pb.SqlInfo_SQL_MAX_CONNECTIONS:                                           int64(0),
		pb.SqlInfo_SQL_MAX_CURSOR_NAME_LENGTH:                                    int64(0),
		pb.SqlInfo_SQL_MAX_INDEX_LENGTH:                                          int64(0),
		pb.SqlInfo_SQL_DB_SCHEMA_NAME_LENGTH:                                     maxIdentifier,
		pb.SqlInfo_SQL_MAX_PROCEDURE_NAME_LENGTH:                                 int64(0),
		pb.SqlInfo_SQL_MAX_CATALOG_NAME_LENGTH:                                   maxIdentifier,
		pb.SqlInfo_SQL_MAX_ROW_SIZE:                                              int64(0),
		pb.SqlInfo_SQL_MAX_ROW_SIZE_INCLUDES_BLOBS:                               false,
		pb.SqlInfo_SQL_MAX_STATEMENT_LENGTH:                                      int64(1 << 20), // flight's maxCommand
		pb.SqlInfo_SQL_MAX_STATEMENTS:                                            int64(0),
		pb.SqlInfo_SQL_MAX_TABLE_NAME_LENGTH:                                     maxIdentifier,
		pb.SqlInfo_SQL_MAX_TABLES_IN_SELECT:                                      int64(1),
		pb.SqlInfo_SQL_MAX_USERNAME_LENGTH:                                       maxIdentifier,
		pb.SqlInfo_SQL_DEFAULT_TRANSACTION_ISOLATION:                             int32(pb.SqlTransactionIsolationLevel_SQL_TRANSACTION_NONE),
		pb.SqlInfo_SQL_TRANSACTIONS_SUPPORTED:                                    false,
		pb.SqlInfo_SQL_SUPPORTED_TRANSACTIONS_ISOLATION_LEVELS:                   int32(0),
		pb.SqlInfo_SQL_DATA_DEFINITION_CAUSES_TRANSACTION_COMMIT:                 false,
		pb.SqlInfo_SQL_DATA_DEFINITIONS_IN_TRANSACTIONS_IGNORED:                  false,
		pb.SqlInfo_SQL_SUPPORTED_RESULT_SET_TYPES:                                int32(1 << pb.SqlSupportedResultSetType_SQL_RESULT_SET_TYPE_FORWARD_ONLY),
		pb.SqlInfo_SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_UNSPECIFIED:        int32(1 << pb.SqlSupportedResultSetConcurrency_SQL_RESULT_SET_CONCURRENCY_READ_ONLY),
		pb.SqlInfo_SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_FORWARD_ONLY:       int32(1 << pb.SqlSupportedResultSetConcurrency_SQL_RESULT_SET_CONCURRENCY_READ_ONLY),
		pb.SqlInfo_SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_SCROLL_SENSITIVE:   int32(0),
		pb.SqlInfo_SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_SCROLL_INSENSITIVE: int32(0),
		pb.SqlInfo_SQL_BATCH_UPDATES_SUPPORTED:                                   false,
		pb.SqlInfo_SQL_SAVEPOINTS_SUPPORTED:                                      false,
		pb.SqlInfo_SQL_NAMED_PARAMETERS_SUPPORTED:                                false,
		pb.SqlInfo_SQL_LOCATORS_UPDATE_COPY:                                      false,
		pb.SqlInfo_SQL_STORED_FUNCTIONS_USING_CALL_SYNTAX_SUPPORTED:              false,
	}
	out := make(map[flightsql.SqlInfo]any, len(info))
	for id, v := range info {
		out[flightsql.SqlInfo(id)] = v
	}
	return out
}
