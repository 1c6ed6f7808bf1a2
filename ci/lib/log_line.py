#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Prints the first line of a linkguard JSON log (`--log-format json`) at LEVEL whose fields mention TEXT,
as "LEVEL message {other fields}"; prints "(no LEVEL line mentions TEXT)" and exits 1 when there is none.

Usage: log_line.py LOG LEVEL TEXT
"""
import json
import sys


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    log, level, text = sys.argv[1:]
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            fields = event.get("fields", {})
            if event.get("level") == level and text in json.dumps(fields):
                rest = {k: v for k, v in fields.items() if k != "message"}
                print(f"{level} {fields.get('message', '')} {json.dumps(rest) if rest else ''}".rstrip())
                return 0
    print(f"(no {level} line mentions {text})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
