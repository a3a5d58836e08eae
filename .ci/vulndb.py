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

modules = {}
for f in sorted(src.glob("GO-*.json")):
    entry = json.loads(f.read_text())
    shutil.copy(f, out / "ID" / f.name)
    for aff in entry.get("affected", []):
        path = aff.get("package", {}).get("name")
        if not path:
            continue
        fixed = ""
        for rng in aff.get("ranges", []):
            for ev in rng.get("events", []):
                fixed = ev.get("fixed", fixed)
        vulns = modules.setdefault(path, {})
        v = {"id": entry["id"], "modified": entry["modified"]}
        if fixed:
            v["fixed"] = fixed
        vulns[entry["id"]] = v

index = [{"path": p, "vulns": list(v.values())} for p, v in sorted(modules.items())]
(out / "index" / "modules.json").write_text(json.dumps(index))
now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
(out / "index" / "db.json").write_text(json.dumps({"modified": now}))
print(f"vulnerability database: {len(list((out / 'ID').iterdir()))} entries, {len(index)} modules")
