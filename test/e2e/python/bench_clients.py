"""The Flight benchmark's Python clients: one way of reading the bench
table per run, as an analyst would read it, timed round by round.

  BENCH_WAY=doget            pyarrow do_get through the ingress, one endpoint
  BENCH_WAY=doget_parallel   pyarrow do_get of every endpoint at once, a thread each
  BENCH_WAY=adbc_postgresql  the ADBC PostgreSQL driver, straight from PostgreSQL
  BENCH_WAY=connectorx       ConnectorX, straight from PostgreSQL

test/e2e.BenchmarkExport runs it (make bench) with the rest of the
environment: BENCH_ROWS, BENCH_QUERY, BENCH_PG_URL, BENCH_PG_POSTMASTER,
BENCH_FRAISE_PIDS and fraiseenv.py's.

Each way reads the whole result into an Arrow table (what a notebook
holds), once untimed to warm caches (unless BENCH_WARM=0), then
BENCH_ROUNDS times (default 3). For each
round it prints the rows, the table's Arrow bytes, the seconds, and the CPU
seconds spent by this process (all its threads), by the processes named
in BENCH_FRAISE_PIDS (Fraise: fraise dev and Envoy) and by the PostgreSQL
server (BENCH_PG_POSTMASTER and its children), read from /proc.
Prints one JSON object: {"rounds": [...]}.
"""
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

WAY = os.environ["BENCH_WAY"]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ROWS = int(os.environ["BENCH_ROWS"])
QUERY = os.environ["BENCH_QUERY"]
PG_URL = os.environ["BENCH_PG_URL"]
POSTMASTER = int(os.environ["BENCH_PG_POSTMASTER"])
FRAISE_PIDS = [int(p) for p in os.environ.get("BENCH_FRAISE_PIDS", "").split(",") if p]
HZ = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """User plus system CPU seconds of pid, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            b = f.read()
    except OSError:
        return 0.0
    fields = b[b.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def pg_cpu():
    """CPU seconds of the PostgreSQL server: its postmaster, every child
    of it (backends and workers; a backend that has exited but is not yet
    reaped still shows its times), and what the postmaster has reaped of
    its exited children (cutime, cstime). So a backend that ends within a
    round, as ConnectorX's does (it connects for each read), is counted
    whole, and none twice."""
    total = 0.0
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat", "rb") as f:
                b = f.read()
        except OSError:
            continue
        fields = b[b.rindex(b")") + 2:].split()
        if int(e) == POSTMASTER:
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / HZ
        elif int(fields[1]) == POSTMASTER:
            total += (int(fields[11]) + int(fields[12])) / HZ
    return total


def doget(parallel):
    import fraiseenv
    from pyarrow import flight
    client = fraiseenv.flight_client()
    opts = fraiseenv.call_options(fraiseenv.token())
    path = ("bench_parallel",) if parallel else ("bench",)

    def read():
        info = client.get_flight_info(flight.FlightDescriptor.for_path(*path), options=opts)
        if parallel and len(info.endpoints) < 2:
            sys.exit(f"{path}: got {len(info.endpoints)} endpoints, want several")
        if len(info.endpoints) == 1:
            return client.do_get(info.endpoints[0].ticket, options=opts).read_all(), 1
        with ThreadPoolExecutor(len(info.endpoints)) as pool:
            tables = list(pool.map(lambda ep: client.do_get(ep.ticket, options=opts).read_all(), info.endpoints))
        return pa.concat_tables(tables), len(info.endpoints)
    return read


def adbc_postgresql():
    import adbc_driver_postgresql.dbapi as pg
    conn = pg.connect(PG_URL)

    def read():
        with conn.cursor() as cur:
            cur.execute(QUERY)
            return cur.fetch_arrow_table(), 1
    return read


def connectorx():
    import connectorx as cx

    def read():
        return cx.read_sql(PG_URL, QUERY, return_type="arrow"), 1
    return read


read = {"doget": lambda: doget(False), "doget_parallel": lambda: doget(True),
        "adbc_postgresql": adbc_postgresql, "connectorx": connectorx}[WAY]()
if os.environ.get("BENCH_WARM", "1") == "1":
    read()  # warm
rounds = []
for _ in range(ROUNDS):
    fraise0 = sum(proc_cpu(p) for p in FRAISE_PIDS)
    pg0 = pg_cpu()
    cpu0, t0 = time.process_time(), time.perf_counter()
    table, endpoints = read()
    sec = time.perf_counter() - t0
    client = time.process_time() - cpu0
    fraise = sum(proc_cpu(p) for p in FRAISE_PIDS) - fraise0
    pg = pg_cpu() - pg0
    if table.num_rows != ROWS:
        sys.exit(f"{WAY}: got {table.num_rows} rows, want {ROWS}")
    rounds.append({"rows": table.num_rows, "bytes": table.nbytes, "sec": sec, "client_cpu": client,
                   "fraise_cpu": fraise, "pg_cpu": pg, "endpoints": endpoints})
    del table
print(json.dumps({"rounds": rounds}))
