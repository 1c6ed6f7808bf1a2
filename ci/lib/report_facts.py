#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Reads signed linkguard reports (Sigstore bundles) the way a third party would: decodes the DSSE payload
(the in-toto Statement) without linkguard, summarises it and checks what ci/demo claims about it.

Usage:
  report_facts.py summary BUNDLE --image-digest sha256:HEX [--observed SYMBOL[|SYMBOL]...]
      One line per fact; exit 1 when the report is not about the image, or when no path of an
      --observed group (alternatives separated by "|") is observed.
  report_facts.py chain DIR [--pod NAME]
      Every *.bundle.json in DIR: per pod, the sequence numbers run from 1 to n without a gap or repeat and each
      report's `previous` is the SHA-256 of the previous report's bundle bytes. Exit 1 on the first break.
The signatures themselves are checked by securesystemslib and @sigstore/verify (tests/interop).
"""
import argparse
import base64
import glob
import hashlib
import json
import os
import sys


def statement(bundle_bytes: bytes) -> dict:
    envelope = json.loads(bundle_bytes)["dsseEnvelope"]
    return json.loads(base64.b64decode(envelope["payload"]))


def fail(message: str) -> int:
    print(f"report_facts.py: {message}", file=sys.stderr)
    return 1


def summary(args) -> int:
    with open(args.bundle, "rb") as f:
        st = statement(f.read())
    about = [s.get("digest", {}).get("sha256") for s in st.get("subject", [])]
    if "sha256:" + (about[0] if about else "") != args.image_digest:
        return fail(f"{args.bundle} is about {about}, not {args.image_digest}")
    p = st["predicate"]
    paths = p.get("paths", [])
    by_status: dict = {}
    for path in paths:
        by_status.setdefault(path["status"], []).append(path)
    observed_symbols = set()
    for path in by_status.get("observed", []):
        observed_symbols.update(c.get("symbol") for c in path.get("calls", []))
        observed_symbols.add(path["id"].split(":", 1)[-1].split("@", 1)[0])
    rate = p.get("observationRate", {})
    pod = p.get("pod") or {}
    window = p.get("window", {})
    print(f"verdict {p.get('verdict')}: {rate.get('observed')} of {rate.get('total')} expected paths observed"
          f" in the window {window.get('from')} .. {window.get('to')}")
    print("paths: " + ", ".join(f"{len(v)} {k}" for k, v in sorted(by_status.items()))
          + f"; unexpected symbols: {len(p.get('unexpectedSymbols', []))}"
          + f"; pod {pod.get('namespace')}/{pod.get('name')}, sequence {p.get('sequence')}")
    unobserved = [x["id"] for x in by_status.get("unobserved", [])]
    for group in args.observed or []:
        wanted = group.split("|")
        hit = [s for s in wanted if s in observed_symbols]
        if not hit:
            return fail(f"none of {wanted} is observed in {args.bundle}")
        print(f"observed: {hit[0]} (a TLS client handshake); e.g. unobserved: "
              + (", ".join(sorted(unobserved)[:3]) or "none"))
    return 0


def chain(args) -> int:
    pods: dict = {}
    for path in sorted(glob.glob(os.path.join(args.dir, "*.bundle.json"))):
        with open(path, "rb") as f:
            data = f.read()
        p = statement(data)["predicate"]
        name = (p.get("pod") or {}).get("name")
        if args.pod and name != args.pod:
            continue
        pods.setdefault(name, []).append((p.get("sequence"), p, hashlib.sha256(data).hexdigest(), path))
    if not pods:
        return fail(f"no reports in {args.dir}")
    for name, reports in pods.items():
        if any(seq is None for seq, *_ in reports):
            return fail(f"pod {name}: a report carries no sequence number")
        reports.sort(key=lambda r: r[0])
        previous_digest = None
        for expected, (seq, p, digest, path) in enumerate(reports, start=1):
            if seq != expected:
                return fail(f"pod {name}: sequence {expected} is missing (next is {seq}, {path})")
            linked = (p.get("previous") or {}).get("sha256")
            if previous_digest is not None and linked != previous_digest:
                return fail(f"pod {name}: report {seq} names previous {linked}, "
                            f"but report {seq - 1} is sha256:{previous_digest}")
            previous_digest = digest
        print(f"chain of pod {name}: reports 1..{reports[-1][0]}, no gap, each linked to the previous")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary")
    s.add_argument("bundle")
    s.add_argument("--image-digest", required=True)
    s.add_argument("--observed", action="append")
    c = sub.add_parser("chain")
    c.add_argument("dir")
    c.add_argument("--pod")
    args = ap.parse_args()
    try:
        return summary(args) if args.command == "summary" else chain(args)
    except (OSError, ValueError, KeyError) as e:
        print(f"report_facts.py: cannot read the reports: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
