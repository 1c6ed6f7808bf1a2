#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes SAMPLE observation records for a function map, in the sidecar's NDJSON format.

Usage: sample_observations.py FUNCTION_MAP OUTPUT.ndjson

The records are synthetic - they are not evidence of anything. ci/demo uses them to show verification,
reporting and signing before the kernel-probing sidecar exists: three of every four required paths are
"seen", plus one watched symbol that the map does not declare (an unexpected symbol).
"""
import datetime
import json
import sys


def main() -> int:
    fmap = json.load(open(sys.argv[1]))
    pred = fmap["predicate"]
    end = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    start = end - datetime.timedelta(seconds=60)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
    base = {"v": 1, "start": iso(start), "end": iso(end), "pod": "demo/demo-curl-0", "container": "app", "pid": 1}
    declared = set()
    records = []
    required = [p for p in pred["expectedPaths"] if not p.get("optional")]
    for i, path in enumerate(required):
        for call in path["calls"]:
            declared.add((call["binary"]["path"], call["symbol"]))
        if i % 4 == 3:
            continue
        for call in path["calls"]:
            rec = dict(base, exe=path["entrypoint"], kind="call", binary=call["binary"]["path"],
                       symbol=call["symbol"], count=1 + (i * 7) % 50)
            if call["binary"].get("buildId"):
                rec["buildId"] = call["binary"]["buildId"]
            records.append(rec)
    for scope in pred.get("watchScopes", []):
        extra = [s for s in scope["symbols"] if (scope["binary"]["path"], s) not in declared]
        if extra:
            rec = dict(base, exe=required[0]["entrypoint"], kind="call", binary=scope["binary"]["path"],
                       symbol=extra[0], count=3)
            if scope["binary"].get("buildId"):
                rec["buildId"] = scope["binary"]["buildId"]
            records.append(rec)
            break
    with open(sys.argv[2], "w") as out:
        for rec in records:
            out.write(json.dumps(rec, separators=(",", ":")) + "\n")
    print(f"{len(records)} sample records for {len(required)} required paths -> {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
