"""pyarrow's Flight client through Fraise's ingress (mTLS, a tenant token):
list_flights, get_flight_info, get_schema, do_get of every mapped type read
exactly into pyarrow, pandas and polars, DuckDB querying the result, and
the refusals as the right Flight errors. Prints a JSON summary."""
import json

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
from pyarrow import flight

import fraiseenv
from types_expected import ARROW_TYPES, COLUMNS, ROWS, same

c = fraiseenv.Checks()
client = fraiseenv.flight_client()
acme = fraiseenv.call_options(fraiseenv.token())
globex = fraiseenv.call_options(fraiseenv.token("FRAISE_TOKEN_OTHER"))
anonymous = fraiseenv.call_options(None)
types_desc = flight.FlightDescriptor.for_path("types", "all")

# list_flights: the datasets this role may export, each with its ticket.
listed = {".".join(p.decode() for p in f.descriptor.path): f for f in client.list_flights(options=acme)}
c.eq("list_flights names", sorted(listed), ["people.users", "types.all"])
c.eq("list_flights schema", listed["types.all"].schema.names, COLUMNS)

# get_schema and get_flight_info: the same schema, with each type mapped.
schema = client.get_schema(types_desc, options=acme).schema
c.eq("get_schema types", {f.name: str(f.type) for f in schema}, ARROW_TYPES)
c.eq("get_schema pg_type metadata", schema.field("c_money").metadata, {b"fraise.pg_type": b"numeric(12,2)"})
info = client.get_flight_info(types_desc, options=acme)
c.eq("get_flight_info schema", info.schema, schema)
c.true("get_flight_info endpoints", len(info.endpoints) >= 1, f"got {len(info.endpoints)}")


def read_all(info, options):
    tables = [client.do_get(ep.ticket, options=options).read_all() for ep in info.endpoints]
    return pa.concat_tables(tables)


table = read_all(info, acme)
c.eq("do_get schema", table.schema.remove_metadata(), schema.remove_metadata())
c.eq("do_get ids", sorted(table.column("id").to_pylist()), [1, 2, 3, 5])

# pyarrow: every value of every row, exactly.
for row in table.to_pylist():
    for col in COLUMNS[1:]:
        want = ROWS[row["id"]].get(col)
        c.true(f"pyarrow row {row['id']} {col}", same(row[col], want), f"got {row[col]!r}, want {want!r}")

# pandas, through Arrow-backed columns (the exact conversion: NumPy's would
# turn int64 with NULLs into float64).
df = table.to_pandas(types_mapper=pd.ArrowDtype).set_index("id")
for rid, cols in ROWS.items():
    for col in COLUMNS[1:]:
        got = df.at[rid, col]
        want = cols.get(col)
        if want is None:
            c.true(f"pandas row {rid} {col}", got is pd.NA or got is None, f"got {got!r}, want NA")
            continue
        if isinstance(got, pd.Timestamp):
            got = got.to_pydatetime()
        if hasattr(got, "tolist"):
            got = got.tolist()
        c.true(f"pandas row {rid} {col}", same(got, want), f"got {got!r}, want {want!r}")
# and NumPy-backed, the default: a time zone survives, and microseconds.
plain = table.select(["id", "c_tstz"]).to_pandas().set_index("id")
c.eq("pandas default c_tstz dtype", str(plain["c_tstz"].dtype), "datetime64[us, UTC]")
c.eq("pandas default c_tstz row 1", plain.at[1, "c_tstz"].isoformat(), "2026-03-28T23:30:00.123456+00:00")

# polars.
pdf = pl.from_arrow(table)
c.eq("polars dtypes", {n: str(t) for n, t in pdf.schema.items() if n in ("c_num", "c_tstz", "c_uuid", "c_int8s")},
     {"c_num": "Decimal(precision=38, scale=6)", "c_tstz": "Datetime(time_unit='us', time_zone='UTC')",
      "c_uuid": "Binary", "c_int8s": "List(Int64)"})
for row in pdf.to_dicts():
    for col in COLUMNS[1:]:
        want = ROWS[row["id"]].get(col)
        c.true(f"polars row {row['id']} {col}", same(row[col], want), f"got {row[col]!r}, want {want!r}")

# DuckDB queries a Flight result through pyarrow.
con = duckdb.connect()
result = table  # noqa: F841 - DuckDB finds the Arrow table by its name
rows = con.execute("""
    SELECT id, c_money, c_text, c_tstz, len(c_texts) AS n
    FROM result WHERE c_money IS NOT NULL ORDER BY c_money DESC""").fetchall()
c.eq("duckdb over the Flight result", [(r[0], str(r[1]), r[2], r[3].isoformat(), r[4]) for r in rows], [
    (2, "9999999999.99", 'h\u00e9llo, "w\u00f6rld"\n\t\U0001F353', "1970-01-01T07:59:59.999999+00:00", 4),
    (5, "12.30", "five", "2000-01-01T00:00:00+00:00", None),
    (1, "-0.01", "", "2026-03-28T23:30:00.123456+00:00", 0),
])
# and a stream DuckDB reads batch by batch, never whole in memory.
reader = pa.RecordBatchReader.from_batches(schema, (
    b for ep in info.endpoints for b in client.do_get(ep.ticket, options=acme).to_reader()))
c.eq("duckdb over a record batch reader", con.execute("SELECT count(*), sum(c_int8) FROM reader").fetchone(),
     (len(ROWS), 6))  # -2^63 + (2^63 - 1) + 7

# A query command: columns, filter, order.
cmd = flight.FlightDescriptor.for_command(json.dumps(
    {"dataset": "types.all", "columns": ["id", "c_text"], "where": {"c_money": {"gte": "12.30"}},
     "order": [{"column": "id", "desc": True}]}))
got = read_all(client.get_flight_info(cmd, options=acme), acme)
c.eq("query command", got.to_pylist(), [{"id": 5, "c_text": "five"}, {"id": 2, "c_text": ROWS[2]["c_text"]}])


# Refusals, as pyarrow raises them: gRPC's UNAUTHENTICATED and
# PERMISSION_DENIED as Flight's own errors, NOT_FOUND as ArrowKeyError,
# INVALID_ARGUMENT as ArrowInvalid.
def refusal(what, call, want):
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the class is what is checked
        c.true(what, type(e) is want, f"got {type(e).__name__}: {e}, want {want.__name__}")
        return
    c.true(what, False, f"no error, want {want.__name__}")


ticket = info.endpoints[0].ticket
refusal("no token", lambda: client.get_flight_info(types_desc, options=anonymous), flight.FlightUnauthenticatedError)
refusal("no token do_get", lambda: client.do_get(ticket, options=anonymous).read_all(), flight.FlightUnauthenticatedError)
refusal("another tenant's ticket", lambda: client.do_get(ticket, options=globex).read_all(), flight.FlightUnauthorizedError)
refusal("an undeclared view", lambda: client.get_flight_info(
    flight.FlightDescriptor.for_path("public", "v_secret"), options=acme), pa.ArrowKeyError)
refusal("an undeclared column", lambda: client.get_flight_info(flight.FlightDescriptor.for_command(
    json.dumps({"dataset": "types.all", "columns": ["tenant_id"]})), options=acme), pa.ArrowInvalid)
refusal("a command that is not a query", lambda: client.get_flight_info(flight.FlightDescriptor.for_command(
    '{"dataset": "types.all", "sql": "select 1"}'), options=acme), pa.ArrowInvalid)

# Globex sees its own row only.
g = read_all(client.get_flight_info(types_desc, options=globex), globex)
c.eq("globex rows", g.column("id").to_pylist(), [4])

c.done(rows=table.num_rows, endpoints=len(info.endpoints))
