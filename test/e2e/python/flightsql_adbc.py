"""The Python ADBC Flight SQL driver (adbc_driver_flightsql.dbapi) through
Fraise's ingress (mTLS, a tenant token): metadata (adbc_get_objects,
adbc_get_table_schema, adbc_get_info), statements with and without bound
parameters, prepared statements, partitions; what a BI tool (JDBC, ODBC)
sends on connect, spoken with pyarrow's Flight client as those drivers
speak it; and refusals. Prints a JSON summary."""
import warnings
from decimal import Decimal

import pyarrow as pa
from adbc_driver_manager import AdbcStatusCode
from pyarrow import flight

import fraiseenv
from types_expected import ARROW_TYPES, COLUMNS, ROWS, same

c = fraiseenv.Checks()
tok, admin_tok, other_tok = fraiseenv.token(), fraiseenv.token("FRAISE_TOKEN_ADMIN"), fraiseenv.token("FRAISE_TOKEN_OTHER")


def status_of(call):
    """Runs call and returns the ADBC status code it failed with, or None."""
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the status is what is checked
        return getattr(e, "status_code", type(e).__name__)
    return None


# A DB-API connection as a notebook opens it: autocommit left off. Fraise
# has no transactions; the driver manager says so with a warning.
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    plain = fraiseenv.adbc_connect(tok, autocommit=False)
with plain.cursor() as cur:
    cur.execute("SELECT id FROM types.all ORDER BY id")
    c.eq("default connection", [r[0] for r in cur.fetchall()], [1, 2, 3, 5])
plain.close()

conn = fraiseenv.adbc_connect(tok)

# adbc_get_info: the server's SqlInfo, as the driver maps it.
info = conn.adbc_get_info()
c.eq("get_info vendor", info.get("vendor_name"), "Fraise")
c.true("get_info arrow version", bool(info.get("vendor_arrow_version")), f"got {info}")

# adbc_get_objects: catalogs, schemas, tables and columns (GetCatalogs,
# GetDbSchemas, GetTables with schemas).
objs = conn.adbc_get_objects(depth="all").read_all().to_pylist()
c.eq("get_objects catalogs", [o["catalog_name"] for o in objs], ["fraise"])
schemas = {s["db_schema_name"]: s for s in objs[0]["catalog_db_schemas"]}
c.eq("get_objects schemas", sorted(schemas), ["people", "types"])
tables = {t["table_name"]: t for t in schemas["types"]["db_schema_tables"]}
c.eq("get_objects tables", sorted(tables), ["all"])
c.eq("get_objects table type", tables["all"]["table_type"], "VIEW")
c.eq("get_objects columns", [col["column_name"] for col in tables["all"]["table_columns"]], COLUMNS)
c.eq("get_objects filtered", [t["table_name"] for o in conn.adbc_get_objects(
    depth="tables", db_schema_filter="peo%").read_all().to_pylist()
    for s in o["catalog_db_schemas"] for t in s["db_schema_tables"]], ["users"])
c.eq("get_table_types", conn.adbc_get_table_types(), ["VIEW"])

# adbc_get_table_schema.
sc = conn.adbc_get_table_schema("all", catalog_filter="fraise", db_schema_filter="types")
c.eq("get_table_schema", {f.name: str(f.type) for f in sc}, ARROW_TYPES)

# A statement, read whole as Arrow: every mapped type, exactly.
with conn.cursor() as cur:
    cur.execute("SELECT * FROM types.all ORDER BY id")
    table = cur.fetch_arrow_table()
c.eq("statement ids", table.column("id").to_pylist(), [1, 2, 3, 5])
for row in table.to_pylist():
    for col in COLUMNS[1:]:
        want = ROWS[row["id"]].get(col)
        c.true(f"statement row {row['id']} {col}", same(row[col], want), f"got {row[col]!r}, want {want!r}")

# DB-API rows, with a filter of every supported shape.
with conn.cursor() as cur:
    cur.execute("SELECT id, c_text FROM fraise.types.all WHERE (c_money >= 12.30 OR c_text LIKE 'f%') "
                "AND id NOT IN (3, 4) AND c_bool IS NOT NULL ORDER BY id DESC LIMIT 5")
    c.eq("statement filter", cur.fetchall(), [(2, ROWS[2]["c_text"])])
    c.eq("cursor description", [d[0] for d in cur.description], ["id", "c_text"])

# Bound parameters: the driver prepares the statement (DoAction, which out
# of the box only admin has), binds the values (DoPut) and executes.
adm = fraiseenv.adbc_connect(admin_tok)
with adm.cursor() as cur:
    cur.execute("SELECT id, c_text FROM types.all WHERE id > ? AND c_text = ? ORDER BY id", parameters=(1, "five"))
    c.eq("parameters int and text", cur.fetchall(), [(5, "five")])
    cur.execute("SELECT id FROM types.all WHERE c_money >= ? AND c_tstz < ? ORDER BY id",
                parameters=(Decimal("12.30"), ROWS[1]["c_tstz"]))
    c.eq("parameters decimal and timestamptz", [r[0] for r in cur.fetchall()], [2, 5])
    cur.execute("SELECT id FROM types.all WHERE c_bool = ? OR c_float8 > ? ORDER BY id", parameters=(True, 1.5))
    c.eq("parameters bool and float", [r[0] for r in cur.fetchall()], [2])
    cur.execute("SELECT id FROM types.all WHERE c_text = ?", parameters=("' OR 1=1 --",))
    c.eq("parameters are never SQL", cur.fetchall(), [])
    # A prepared statement executed with one value, then another.
    param_schema = cur.adbc_prepare("SELECT id, c_money FROM types.all WHERE id = ?")
    c.eq("prepared parameter count", len(param_schema), 1)
    cur.execute("SELECT id, c_money FROM types.all WHERE id = ?", parameters=(5,))
    c.eq("prepared first", cur.fetchall(), [(5, Decimal("12.30"))])
    cur.execute("SELECT id, c_money FROM types.all WHERE id = ?", parameters=(1,))
    c.eq("prepared second", cur.fetchall(), [(1, Decimal("-0.01"))])
    # Prepared without parameters.
    cur.adbc_prepare("SELECT id FROM types.all WHERE c_int8 = 7")
    cur.execute("SELECT id FROM types.all WHERE c_int8 = 7")
    c.eq("prepared without parameters", cur.fetchall(), [(5,)])
    # Too few values is the client's mistake.
    c.eq("parameters missing", status_of(lambda: cur.execute(
        "SELECT id FROM types.all WHERE id = ? AND c_int8 = ?", parameters=(1,))), AdbcStatusCode.INVALID_ARGUMENT)

# Partitions (FlightInfo endpoints) are bound to who asked for them.
with conn.cursor() as cur:
    partitions, _ = cur.adbc_execute_partitions("SELECT id FROM types.all")
    ids = []
    for p in partitions:
        cur.adbc_read_partition(p)
        ids += [r[0] for r in cur.fetchall()]
    c.eq("partitions", sorted(ids), [1, 2, 3, 5])
other = fraiseenv.adbc_connect(other_tok)
with other.cursor() as cur:
    c.eq("another tenant's partition", status_of(lambda: (cur.adbc_read_partition(partitions[0]), cur.fetchall())),
         AdbcStatusCode.UNAUTHORIZED)

# Refusals, as ADBC reports them.
nobody = fraiseenv.adbc_connect(None)


def run(cn, sql):
    def call():
        with cn.cursor() as cur:
            cur.execute(sql)
            cur.fetchall()
    return call


c.eq("no token", status_of(run(nobody, "SELECT id FROM types.all")), AdbcStatusCode.UNAUTHENTICATED)
c.eq("a join", status_of(run(conn, "SELECT * FROM types.all a JOIN people.users u ON a.id = u.id")),
     AdbcStatusCode.INVALID_ARGUMENT)
c.eq("a function", status_of(run(conn, "SELECT pg_read_file('/etc/passwd')")), AdbcStatusCode.INVALID_ARGUMENT)
c.eq("an undeclared view", status_of(run(conn, "SELECT * FROM public.v_secret")), AdbcStatusCode.INVALID_ARGUMENT)
c.eq("a write", status_of(run(conn, "DELETE FROM types.all")), AdbcStatusCode.UNAUTHORIZED)

# What a BI tool asks on connect, sent as the JDBC and ODBC drivers send it.
client = fraiseenv.flight_client()
opts = fraiseenv.call_options(tok)


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, wire, payload):
    if wire == 0:
        return varint(num << 3) + varint(payload)
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def command(name, body=b""):
    url = b"type.googleapis.com/arrow.flight.protocol.sql." + name.encode()
    return flight.FlightDescriptor.for_command(field(1, 2, url) + field(2, 2, body))


def fetch(desc):
    info = client.get_flight_info(desc, options=opts)
    return pa.concat_tables([client.do_get(ep.ticket, options=opts).read_all() for ep in info.endpoints])


# Every SqlInfo id of Flight SQL's protocol (FlightSql.proto): a JDBC
# driver's DatabaseMetaData reads them all.
SQL_INFO_IDS = [*range(0, 12), 100, 101, *range(500, 577)]
got = fetch(command("CommandGetSqlInfo", field(1, 2, b"".join(varint(i) for i in SQL_INFO_IDS))))
names = got.column("info_name").to_pylist()
c.eq("GetSqlInfo every id", sorted(names), SQL_INFO_IDS)
values = dict(zip(names, got.column("value").to_pylist()))
c.eq("GetSqlInfo server name", values.get(0), "Fraise")
c.eq("GetSqlInfo read only", values.get(3), True)
c.eq("GetSqlInfo quote char", values.get(504), '"')
everything = fetch(command("CommandGetSqlInfo"))
c.true("GetSqlInfo with no ids", set(SQL_INFO_IDS) <= set(everything.column("info_name").to_pylist()),
       f"got {sorted(everything.column('info_name').to_pylist())}")
c.eq("GetCatalogs", fetch(command("CommandGetCatalogs")).to_pylist(), [{"catalog_name": "fraise"}])
c.eq("GetDbSchemas", fetch(command("CommandGetDbSchemas", field(1, 2, b"fraise"))).column("db_schema_name").to_pylist(),
     ["people", "types"])
t = fetch(command("CommandGetTables", field(2, 2, b"types") + field(5, 0, 1)))
c.eq("GetTables", t.select(["catalog_name", "db_schema_name", "table_name", "table_type"]).to_pylist(),
     [{"catalog_name": "fraise", "db_schema_name": "types", "table_name": "all", "table_type": "VIEW"}])
c.eq("GetTables schema", pa.ipc.read_schema(pa.py_buffer(t.column("table_schema")[0].as_py())).names, COLUMNS)
c.eq("GetTableTypes", fetch(command("CommandGetTableTypes")).to_pylist(), [{"table_type": "VIEW"}])
pk = fetch(command("CommandGetPrimaryKeys", field(2, 2, b"types") + field(3, 2, b"all")))
c.eq("GetPrimaryKeys", pk.num_rows, 0)
c.eq("GetPrimaryKeys schema", pk.schema.names, ["catalog_name", "db_schema_name", "table_name", "column_name", "key_name", "key_sequence"])
xdbc = fetch(command("CommandGetXdbcTypeInfo"))
xnames = xdbc.column("type_name").to_pylist()
c.true("GetXdbcTypeInfo", {"int8", "numeric", "text", "timestamptz", "uuid"} <= set(xnames), f"got {xnames}")
bigint = fetch(command("CommandGetXdbcTypeInfo", field(1, 0, (-5) & 0xFFFFFFFFFFFFFFFF)))
c.eq("GetXdbcTypeInfo of BIGINT", bigint.column("type_name").to_pylist(), ["int8"])

c.done(rows=table.num_rows)
