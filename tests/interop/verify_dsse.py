#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Verify a DSSE envelope written by linkguard with securesystemslib, a verifier linkguard did not write.

usage: verify_dsse.py ENVELOPE.json PUBLIC_KEY.pem
exit:  0 the signature verifies, 1 it does not (or the envelope is malformed), 2 usage or unreadable input

The keyid is computed here from the public key by linkguard's documented rule (lowercase hex SHA-256 of
the DER SubjectPublicKeyInfo). securesystemslib only tries keys whose keyid equals the signature's, so a
keyid that does not follow the rule fails verification too.
"""

import binascii
import hashlib
import json
import sys

from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    envelope_path, key_path = argv[1], argv[2]
    try:
        with open(key_path, "rb") as f:
            public_key = serialization.load_pem_public_key(f.read())
        with open(envelope_path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, ValueError) as e:
        print(f"cannot read input: {e}", file=sys.stderr)
        return 2

    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    keyid = hashlib.sha256(spki).hexdigest()
    key = SSlibKey.from_crypto(public_key, keyid=keyid, scheme="ecdsa-sha2-nistp256")

    try:
        envelope = Envelope.from_dict(document)
        envelope.verify([key], 1)
    except (VerificationError, KeyError, ValueError, binascii.Error) as e:
        print(f"INVALID: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"OK: securesystemslib verified the envelope (keyid {keyid}, payloadType {envelope.payload_type})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
