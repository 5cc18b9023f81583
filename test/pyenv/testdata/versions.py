"""Prints the versions of the test clients as JSON: {package: version}."""
import json
from importlib.metadata import version

PACKAGES = ["pyarrow", "pandas", "polars", "duckdb", "adbc-driver-flightsql",
            "adbc-driver-manager", "adbc-driver-postgresql", "connectorx"]
print(json.dumps({p: version(p) for p in PACKAGES}))
