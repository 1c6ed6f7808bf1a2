#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Packages a root filesystem directory as a single-layer OCI image layout, reproducibly.

Usage: oci_image.py ROOTFS OUTPUT_DIR --name NAME --entrypoint PATH [--tag TAG]

Prints the manifest digest (sha256:<hex>) on stdout. Same input files -> same digest: entries are sorted,
owned by root, mtime 0, and the gzip header carries no timestamp. This is how ci/demo builds the demo app image
without a container engine.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(rootfs: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = []
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                paths.append(os.path.join(dirpath, name))
        for path in sorted(paths):
            info = tar.gettarinfo(path, arcname=os.path.relpath(path, rootfs))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def write_blob(out: str, data: bytes) -> dict:
    digest = sha256(data)
    blob_dir = os.path.join(out, "blobs", "sha256")
    os.makedirs(blob_dir, exist_ok=True)
    with open(os.path.join(blob_dir, digest.split(":", 1)[1]), "wb") as f:
        f.write(data)
    return {"digest": digest, "size": len(data)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rootfs")
    ap.add_argument("output")
    ap.add_argument("--name", required=True)
    ap.add_argument("--entrypoint", required=True)
    ap.add_argument("--tag", default="latest")
    args = ap.parse_args()
    if not os.path.isdir(args.rootfs):
        print(f"oci_image.py: {args.rootfs} is not a directory", file=sys.stderr)
        return 2

    tar = layer_tar(args.rootfs)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(tar)
    layer = write_blob(args.output, gz.getvalue())
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [args.entrypoint]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    }
    config_desc = write_blob(args.output, json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
        "annotations": {"org.opencontainers.image.title": args.name},
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_desc = write_blob(args.output, manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "annotations": {"org.opencontainers.image.ref.name": args.tag},
            }
        ],
    }
    with open(os.path.join(args.output, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True)
    with open(os.path.join(args.output, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(manifest_desc["digest"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
