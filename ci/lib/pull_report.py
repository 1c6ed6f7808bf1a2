#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Finds and pulls a linkguard report with oras-py, a registry client linkguard did not write.

Usage: pull_report.py REGISTRY REPOSITORY IMAGE_DIGEST OUTPUT_DIR [--digest REPORT_DIGEST | --all]

Lists the referrers of the image the way any OCI 1.1 client does - the referrers API, or on a registry
without it (Debian's docker-registry) the `sha256-<hex>` fallback tag - keeps the Sigstore bundles, pulls
the newest (by org.opencontainers.image.created) or REPORT_DIGEST with oras-py's `pull`, checks the layer's
digest, and writes OUTPUT_DIR/report.bundle.json and OUTPUT_DIR/report.dsse.json (the envelope alone);
with --all, every report as OUTPUT_DIR/<manifest hex>.bundle.json.
Prints one JSON object: the pulled report manifest digests, how they were found, how many were listed.
Exit: 0 pulled, 1 no report or a digest mismatch, 2 usage or registry errors.
"""
import argparse
import hashlib
import json
import os
import sys

import oras.provider

BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CREATED = "org.opencontainers.image.created"


def referrers(client: oras.provider.Registry, registry: str, repository: str, digest: str):
    """The image's referrers: the API when the registry has it, else the fallback tag (OCI 1.1)."""
    url = f"http://{registry}/v2/{repository}/referrers/{digest}"
    response = client.do_request(url, "GET", headers={"Accept": INDEX})
    if response.status_code == 200:
        return response.json().get("manifests", []), "referrers API"
    if response.status_code != 404:
        raise RuntimeError(f"GET {url}: HTTP {response.status_code}")
    tag = digest.replace(":", "-")
    try:
        index = client.get_manifest(f"{registry}/{repository}:{tag}", allowed_media_type=[INDEX])
    except ValueError:
        return [], "fallback tag (absent)"
    return index.get("manifests", []), f"fallback tag {tag}"


def pull(client, args, report: str, out: str):
    """oras-py pulls the report's layer; returns (bundle bytes, None) or (None, why not)."""
    target = f"{args.registry}/{args.repository}@{report}"
    files = client.pull(target=target, outdir=out)
    manifest = client.get_manifest(target)
    layers = [layer for layer in manifest.get("layers", []) if layer.get("mediaType") == BUNDLE]
    if manifest.get("subject", {}).get("digest") != args.image_digest or len(layers) != 1:
        return None, f"{report} is not one bundle about {args.image_digest}"
    layer_digest = layers[0]["digest"]
    files = [f for f in files if os.path.basename(f) == layer_digest]
    if len(files) != 1:
        return None, f"oras pulled no file for the layer {layer_digest} of {report}"
    with open(files[0], "rb") as f:
        data = f.read()
    os.remove(files[0])
    if "sha256:" + hashlib.sha256(data).hexdigest() != layer_digest:
        return None, f"the layer of {report} does not match its digest {layer_digest}"
    return data, None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("registry")
    ap.add_argument("repository")
    ap.add_argument("image_digest")
    ap.add_argument("output_dir")
    ap.add_argument("--digest", help="pull this report (manifest digest) instead of the newest")
    ap.add_argument("--all", action="store_true", help="pull every report, as OUTPUT_DIR/<hex>.bundle.json")
    args = ap.parse_args()

    client = oras.provider.Registry(hostname=args.registry, insecure=True)
    try:
        listed, how = referrers(client, args.registry, args.repository, args.image_digest)
    except Exception as e:  # noqa: BLE001 - any registry failure is reported the same way
        print(f"pull_report.py: listing the referrers of {args.image_digest}: {e}", file=sys.stderr)
        return 2
    reports = [m for m in listed if m.get("artifactType") == BUNDLE]
    if args.digest:
        wanted = [m for m in reports if m["digest"] == args.digest]
    else:
        wanted = sorted(reports, key=lambda m: (m.get("annotations") or {}).get(CREATED, ""), reverse=True)
    if not wanted:
        print(f"pull_report.py: no report {args.digest or ''} among {len(reports)} listed ({how})", file=sys.stderr)
        return 1
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    pulled = {}
    for entry in wanted if args.all else wanted[:1]:
        try:
            data, error = pull(client, args, entry["digest"], out)
        except Exception as e:  # noqa: BLE001 - any registry failure is reported the same way
            print(f"pull_report.py: pulling {entry['digest']}: {e}", file=sys.stderr)
            return 2
        if error:
            print(f"pull_report.py: {error}", file=sys.stderr)
            return 1
        pulled[entry["digest"]] = data
        if args.all:
            with open(os.path.join(out, entry["digest"].split(":", 1)[1] + ".bundle.json"), "wb") as f:
                f.write(data)
    if not args.all:
        data = pulled[wanted[0]["digest"]]
        with open(os.path.join(out, "report.bundle.json"), "wb") as f:
            f.write(data)
        with open(os.path.join(out, "report.dsse.json"), "w") as f:
            json.dump(json.loads(data)["dsseEnvelope"], f)
    print(json.dumps({"reports": list(pulled), "found": how, "listed": len(reports)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
