#!/usr/bin/env python3
"""Builds a Go vulnerability database, in the layout govulncheck reads with
-db file://DIR, from the OSV files of a pinned golang.org/x/vulndb module.

vuln.go.dev is not reachable from every machine Fraise is built on; the Go
module proxy is, and it serves golang.org/x/vulndb, whose data/osv holds
the same entries. govulncheck uses the index only to choose the entries it
reads whole, so an entry's fixed versions are left to the entry itself.

usage: vulndb.py OSV_DIR OUT_DIR
"""
import json
import os
import sys


def main(src, out):
    os.makedirs(os.path.join(out, "ID"), exist_ok=True)
    os.makedirs(os.path.join(out, "index"), exist_ok=True)
    modules = {}
    vulns = []
    newest = "0001-01-01T00:00:00Z"
    for name in sorted(os.listdir(src)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(src, name), "rb") as f:
            raw = f.read()
        entry = json.loads(raw)
        vid = entry["id"]
        modified = entry.get("modified", "0001-01-01T00:00:00Z")
        newest = max(newest, modified)
        vulns.append({"id": vid, "modified": modified, "aliases": entry.get("aliases", [])})
        for affected in entry.get("affected", []):
            path = affected.get("package", {}).get("name")
            if path:
                modules.setdefault(path, []).append({"id": vid, "modified": modified})
        with open(os.path.join(out, "ID", name), "wb") as f:
            f.write(raw)
    index = [{"path": p, "vulns": v} for p, v in sorted(modules.items())]
    for fname, data in (("db.json", {"modified": newest}), ("modules.json", index), ("vulns.json", vulns)):
        with open(os.path.join(out, "index", fname), "w") as f:
            json.dump(data, f)
    print(f"vulndb: {len(vulns)} entries, {len(index)} modules in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
