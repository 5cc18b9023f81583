"""pyarrow reads an export's endpoints in parallel, one thread each, and
checks that together they are one snapshot of the ledger (every Acme
account once, balances summing to zero while transfers commit), and,
with LEDGER_QUIET set (no writes), exactly the single stream."""
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import flight

import fraiseenv

c = fraiseenv.Checks()
client = fraiseenv.flight_client()
acme = fraiseenv.call_options(fraiseenv.token())
rows = int(os.environ["LEDGER_ROWS"])


def read(endpoints):
    with ThreadPoolExecutor(len(endpoints)) as pool:
        tables = list(pool.map(lambda ep: client.do_get(ep.ticket, options=acme).read_all(), endpoints))
    return pa.concat_tables(tables)


for rnd in range(2):
    info = client.get_flight_info(flight.FlightDescriptor.for_path("ledger"), options=acme)
    c.eq(f"round {rnd} endpoints", len(info.endpoints), 2)
    t = read(info.endpoints)
    c.eq(f"round {rnd} rows", t.num_rows, rows)
    c.eq(f"round {rnd} distinct ids", len(pc.unique(t.column("id"))), rows)
    c.eq(f"round {rnd} balances sum", pc.sum(t.column("v")).as_py(), 0)

single = client.get_flight_info(flight.FlightDescriptor.for_command(
    json.dumps({"dataset": "ledger", "limit": 1000000000})), options=acme)
c.eq("single stream endpoints", len(single.endpoints), 1)
s = read(single.endpoints)
c.eq("single stream balances sum", pc.sum(s.column("v")).as_py(), 0)
if os.environ.get("LEDGER_QUIET"):
    info = client.get_flight_info(flight.FlightDescriptor.for_path("ledger"), options=acme)
    p = read(info.endpoints).sort_by("id")
    c.eq("union of endpoints equals the single stream", p.equals(s.sort_by("id")), True)

c.done(rows=rows)
