#!/usr/bin/env python3
"""Build a local Go vulnerability database for govulncheck -db file://OUT.

vuln.go.dev is out of reach from CI, but the module proxy serves
golang.org/x/vulndb, whose data/osv holds every OSV entry. This writes the
v1 layout govulncheck reads: index/db.json, index/modules.json, ID/<id>.json.

usage: vulndb.py VULNDB_MODULE_DIR OUT
"""
import json, os, pathlib, shutil, sys
from datetime import datetime, timezone

src = pathlib.Path(sys.argv[1]) / "data" / "osv"
out = pathlib.Path(sys.argv[2])
shutil.rmtree(out, ignore_errors=True)
(out / "ID").mkdir(parents=True)
(out / "index").mkdir()

modules = {}  # module path -> {id: index entry}
for f in sorted(src.glob("GO-*.json")):
    entry = json.loads(f.read_text())
    shutil.copy(f, out / "ID" / f.name)
    for aff in entry.get("affected", []):
        path = aff.get("package", {}).get("name")
        if not path:
            continue
        # No "fixed" hint: govulncheck would skip an entry whose hint is at
        # or below our version, and a hint computed wrong (a vulnerability
        # reintroduced later, several affected blocks) would be a silent
        # miss. Without it every entry of our modules is read and its
        # ranges checked in full; they are local files.
        modules.setdefault(path, {})[entry["id"]] = {"id": entry["id"], "modified": entry["modified"]}

index = [{"path": p, "vulns": list(v.values())} for p, v in sorted(modules.items())]
(out / "index" / "modules.json").write_text(json.dumps(index))
now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
(out / "index" / "db.json").write_text(json.dumps({"modified": now}))
print(f"vulnerability database: {len(list((out / 'ID').iterdir()))} entries, {len(index)} modules")
