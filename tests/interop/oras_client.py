#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""oras-py (PyPI `oras`), a registry client linkguard did not write, against a registry on loopback.

usage:
  oras_client.py pull REGISTRY REPOSITORY DIGEST OUTDIR
  oras_client.py push-referrer REGISTRY REPOSITORY --subject DIGEST --file FILE --media-type TYPE --tag TAG
                 [--style artifact-type|config-media-type] [--annotation KEY=VALUE]... [--update-fallback-index]

REGISTRY is host:port and is spoken to over plain HTTP (the test registries listen on 127.0.0.1).

pull: oras-py's Registry.pull of REPOSITORY@DIGEST into OUTDIR. Prints one JSON object
  {"manifest": {...}, "files": [{"path", "digest", "mediaType", "size"}]} with the files in layer order.
  oras-py 0.2 checks no digest when it pulls, so this script does: it fails when the manifest served for DIGEST
  or a pulled file does not hash to its digest.

push-referrer: pushes FILE as the one layer (of media type TYPE) of an OCI image manifest whose `subject` is
  REPOSITORY@DIGEST, tagged TAG (oras-py pushes to a tag), and prints one JSON object
  {"digest", "size", "artifactType", "ociSubject", "fallbackIndex"}.
  --style artifact-type (default): the manifest an image-spec 1.1 artifact is: `artifactType` TYPE and the empty
    config descriptor. oras-py's Registry.push() cannot set `artifactType`, so this uses oras-py's lower-level
    upload_blob() and upload_manifest().
  --style config-media-type: oras-py's high-level Registry.push(). It writes no `artifactType`; the type is the
    config's mediaType (the image-spec 1.0 way, which the referrers API reports as the artifactType).
  --annotation KEY=VALUE: manifest annotations.

  oras-py 0.2.43 neither probes for the referrers API nor maintains the distribution spec's `sha256-<hex>`
  referrers tag: on a registry without the referrers API the pushed manifest stays undiscoverable until its
  pusher adds it to that index. --update-fallback-index does that read-modify-write, as the spec asks of the
  client, through oras-py's own HTTP session (its API has no index upload: upload_manifest() always sends the
  image manifest media type and validates against the manifest schema). "fallbackIndex" in the output is
  "updated" or "not-updated".

exit: 0 done, 1 the registry refused or served something that does not match, 2 usage
"""

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile

import oras.defaults
import oras.oci
import oras.provider

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MANIFEST_TYPES = ", ".join(oras.defaults.default_manifest_accepted_media_types)


class Mismatch(Exception):
    """The registry refused a request or served content that does not match its digest."""


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return sha256(f.read())


def manifest_url(reg: oras.provider.Registry, registry: str, repository: str, reference: str) -> str:
    return f"{reg.prefix}://{registry}/v2/{repository}/manifests/{reference}"


def get_manifest_bytes(reg, registry: str, repository: str, digest: str):
    """The manifest DIGEST as served, checked against DIGEST; returns (bytes, Content-Type)."""
    response = reg.do_request(
        manifest_url(reg, registry, repository, digest), "GET", headers={"Accept": MANIFEST_TYPES}
    )
    if response.status_code != 200:
        raise Mismatch(f"GET manifest {repository}@{digest}: HTTP {response.status_code} {response.text[:200]}")
    body = response.content
    if sha256(body) != digest:
        raise Mismatch(f"manifest {repository}@{digest} served with digest {sha256(body)}")
    return body, response.headers.get("Content-Type", "").split(";")[0].strip()


def pull(args) -> dict:
    reg = oras.provider.Registry(args.registry, insecure=True)
    target = f"{args.registry}/{args.repository}@{args.digest}"
    body, _ = get_manifest_bytes(reg, args.registry, args.repository, args.digest)
    manifest = reg.get_manifest(target)
    if manifest != json.loads(body):
        raise Mismatch(f"oras-py's get_manifest of {target} differs from the bytes served for that digest")
    files = reg.pull(target=target, outdir=args.outdir)
    layers = manifest.get("layers", [])
    if len(files) != len(layers):
        raise Mismatch(f"oras-py pulled {len(files)} files for {len(layers)} layers")
    out = []
    for path, layer in zip(files, layers):
        actual = file_digest(path)
        if actual != layer["digest"]:
            raise Mismatch(f"{path}: sha256 is {actual}, the layer descriptor says {layer['digest']}")
        out.append(
            {"path": path, "digest": layer["digest"], "mediaType": layer["mediaType"], "size": os.path.getsize(path)}
        )
    return {"manifest": manifest, "files": out}


def subject_of(reg, registry: str, repository: str, digest: str) -> oras.oci.Subject:
    """The subject descriptor from the manifest bytes as served (not oras.oci.Subject.from_manifest, which
    hashes a re-serialisation of the parsed JSON and so names another digest unless the registry's bytes happen
    to be Python's json.dumps output)."""
    body, content_type = get_manifest_bytes(reg, registry, repository, digest)
    media_type = content_type or json.loads(body).get("mediaType") or OCI_MANIFEST
    return oras.oci.Subject(mediaType=media_type, digest=digest, size=len(body))


def push_artifact_type(reg, args, subject, annotations) -> object:
    """oras-py's upload_blob + upload_manifest: an image-spec 1.1 artifact manifest."""
    container = reg.get_container(f"{args.registry}/{args.repository}:{args.tag}")
    layer = oras.oci.NewLayer(args.file, media_type=args.media_type)
    layer["annotations"] = {oras.defaults.annotation_title: os.path.basename(args.file)}
    check(reg.upload_blob(args.file, container, layer), f"upload of {args.file}")
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(b"{}")
        empty_path = f.name
    try:
        config = {"mediaType": OCI_EMPTY, "digest": file_digest(empty_path), "size": 2}
        check(reg.upload_blob(empty_path, container, config), "upload of the empty config")
    finally:
        os.unlink(empty_path)
    manifest = oras.oci.NewManifest()
    manifest["artifactType"] = args.media_type
    manifest["config"] = config
    manifest["layers"] = [layer]
    manifest["subject"] = dataclasses.asdict(subject)
    if annotations:
        manifest["annotations"] = annotations
    else:
        del manifest["annotations"]
    return reg.upload_manifest(manifest, container)


def push_config_media_type(reg, args, subject, annotations) -> object:
    """oras-py's high-level Registry.push(): no artifactType, the type is the config's mediaType."""
    target = f"{args.registry}/{args.repository}:{args.tag}"
    return reg.push(
        target=target,
        files=[f"{args.file}:{args.media_type}"],
        disable_path_validation=True,
        manifest_config=f"{os.devnull}:{args.media_type}",
        manifest_annotations=annotations or None,
        subject=subject,
        quiet=True,
    )


def check(response, what: str) -> None:
    if response.status_code not in (200, 201, 202):
        raise Mismatch(f"{what}: HTTP {response.status_code} {getattr(response, 'text', '')[:200]}")


def update_fallback_index(reg, registry: str, repository: str, subject_digest: str, entry: dict) -> None:
    """Adds ENTRY to the `sha256-<hex>` referrers index of SUBJECT_DIGEST (distribution spec, "Pushing
    Manifests with Subject" on a registry without the referrers API): read, add if absent, write back."""
    url = manifest_url(reg, registry, repository, subject_digest.replace(":", "-"))
    response = reg.do_request(url, "GET", headers={"Accept": OCI_INDEX})
    if response.status_code == 404:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    elif response.status_code == 200:
        index = response.json()
        if index.get("mediaType") != OCI_INDEX:
            raise Mismatch(f"{url} is {index.get('mediaType')!r}, not an OCI image index")
    else:
        raise Mismatch(f"GET {url}: HTTP {response.status_code}")
    if any(m.get("digest") == entry["digest"] for m in index.get("manifests", [])):
        return
    index.setdefault("manifests", []).append(entry)
    body = json.dumps(index, separators=(",", ":")).encode()
    check(reg.do_request(url, "PUT", data=body, headers={"Content-Type": OCI_INDEX}), f"PUT {url}")


def push_referrer(args) -> dict:
    reg = oras.provider.Registry(args.registry, insecure=True)
    annotations = dict(item.partition("=")[::2] for item in args.annotation)
    subject = subject_of(reg, args.registry, args.repository, args.subject)
    if args.style == "artifact-type":
        response = push_artifact_type(reg, args, subject, annotations)
    else:
        response = push_config_media_type(reg, args, subject, annotations)
    check(response, f"manifest PUT {args.repository}:{args.tag}")
    digest = response.headers.get("Docker-Content-Digest", "")
    body, _ = get_manifest_bytes(reg, args.registry, args.repository, digest)
    manifest = json.loads(body)
    if (manifest.get("subject") or {}).get("digest") != args.subject:
        raise Mismatch(f"pushed manifest {digest} has subject {manifest.get('subject')}, not {args.subject}")
    artifact_type = manifest.get("artifactType") or manifest["config"]["mediaType"]
    fallback = "not-updated"
    if args.update_fallback_index:
        entry = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body), "artifactType": artifact_type}
        if manifest.get("annotations"):
            entry["annotations"] = manifest["annotations"]
        update_fallback_index(reg, args.registry, args.repository, args.subject, entry)
        fallback = "updated"
    return {
        "digest": digest,
        "size": len(body),
        "artifactType": artifact_type,
        "ociSubject": response.headers.get("OCI-Subject"),
        "fallbackIndex": fallback,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pull")
    p.add_argument("registry")
    p.add_argument("repository")
    p.add_argument("digest")
    p.add_argument("outdir")
    p = sub.add_parser("push-referrer")
    p.add_argument("registry")
    p.add_argument("repository")
    p.add_argument("--subject", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--media-type", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--style", choices=["artifact-type", "config-media-type"], default="artifact-type")
    p.add_argument("--annotation", action="append", default=[])
    p.add_argument("--update-fallback-index", action="store_true")
    args = parser.parse_args(argv[1:])
    for item in getattr(args, "annotation", []):
        if not item.partition("=")[0] or "=" not in item:
            parser.error(f"--annotation {item!r} is not KEY=VALUE")
    try:
        result = pull(args) if args.command == "pull" else push_referrer(args)
    except Mismatch as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # oras-py and requests raise ValueError, HTTPError, ConnectionError...
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
