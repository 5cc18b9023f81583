"""The Flight benchmark's Python clients: one way of reading the bench
table per run, as an analyst would read it, timed round by round.

  BENCH_WAY=doget            pyarrow do_get through the ingress, one endpoint
  BENCH_WAY=doget_parallel   pyarrow do_get of every endpoint at once, a thread each
  BENCH_WAY=adbc_postgresql  the ADBC PostgreSQL driver, straight from PostgreSQL
  BENCH_WAY=connectorx       ConnectorX, straight from PostgreSQL

test/e2e.BenchmarkExport runs it (make bench) with the rest of the
environment: BENCH_ROWS, BENCH_QUERY, BENCH_PG_URL, BENCH_PG_DB,
BENCH_PG_POSTMASTER, BENCH_FRAISE_PIDS and fraiseenv.py's.

Each way reads the whole result into an Arrow table (what a notebook
holds), once untimed to warm caches, then BENCH_ROUNDS times. For each
round it prints the rows, the table's Arrow bytes, the seconds, and the CPU
seconds spent by this process (all its threads), by the processes named
in BENCH_FRAISE_PIDS (Fraise: fraise dev and Envoy) and by the PostgreSQL
backends of database BENCH_PG_DB, read from /proc.
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
PG_DB = os.environ["BENCH_PG_DB"]
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
    """CPU seconds of PostgreSQL serving PG_DB, and the pids of its
    backends: those alive now, plus what the postmaster has reaped of its
    exited children (cutime and cstime), so a backend that ends within a
    round (ConnectorX opens one per read) is counted whole."""
    total, pids = 0.0, set()
    needle = (" " + PG_DB + " ").encode()
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if cmd.startswith(b"postgres: ") and needle in cmd:
            total += proc_cpu(int(e))
            pids.add(int(e))
    try:
        with open(f"/proc/{POSTMASTER}/stat", "rb") as f:
            b = f.read()
        fields = b[b.rindex(b")") + 2:].split()
        total += (int(fields[13]) + int(fields[14])) / HZ
    except OSError:
        pass
    return total, pids


def pg_cpu_after(before):
    """pg_cpu once the backends a round opened have ended and been reaped
    (a client's closed connection ends its backend a moment later), for
    at most two seconds."""
    deadline = time.monotonic() + 2
    while True:
        total, pids = pg_cpu()
        if pids <= before or time.monotonic() > deadline:
            return total
        time.sleep(0.01)


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
read()  # warm
rounds = []
for _ in range(ROUNDS):
    fraise0 = sum(proc_cpu(p) for p in FRAISE_PIDS)
    pg0, pids0 = pg_cpu()
    cpu0, t0 = time.process_time(), time.perf_counter()
    table, endpoints = read()
    sec = time.perf_counter() - t0
    client = time.process_time() - cpu0
    fraise = sum(proc_cpu(p) for p in FRAISE_PIDS) - fraise0
    pg = pg_cpu_after(pids0) - pg0
    if table.num_rows != ROWS:
        sys.exit(f"{WAY}: got {table.num_rows} rows, want {ROWS}")
    rounds.append({"rows": table.num_rows, "bytes": table.nbytes, "sec": sec, "client_cpu": client,
                   "fraise_cpu": fraise, "pg_cpu": pg, "endpoints": endpoints})
    del table
print(json.dumps({"rounds": rounds}))
