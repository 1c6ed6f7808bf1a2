// SPDX-License-Identifier: Apache-2.0
// Verify a Sigstore bundle written by linkguard with @sigstore/bundle and @sigstore/verify, offline, with
// a public key: verifiers linkguard did not write.
//
// usage: node verify_bundle.mjs BUNDLE.json PUBLIC_KEY.pem
// exit:  0 the bundle verifies, 1 it does not (or is not a valid bundle), 2 usage or unreadable input
//
// The trust material holds only the public key, filed under the hint cosign would compute for it
// (standard base64 of SHA-256 over the DER SubjectPublicKeyInfo): a bundle whose hint does not follow
// that rule is rejected as "key not found". No transparency log, certificate or timestamp is required.

import { createHash, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { bundleFromJSON } from '@sigstore/bundle';
import { Verifier, toSignedEntity, toTrustMaterial } from '@sigstore/verify';

const IN_TOTO = 'application/vnd.in-toto+json';
// protobuf-specs PublicKeyDetails.PKIX_ECDSA_P256_SHA_256
const PKIX_ECDSA_P256_SHA_256 = 5;

function main(argv) {
  if (argv.length !== 2) {
    console.error('usage: node verify_bundle.mjs BUNDLE.json PUBLIC_KEY.pem');
    return 2;
  }
  let json;
  let spki;
  try {
    json = JSON.parse(readFileSync(argv[0], 'utf8'));
    spki = createPublicKey(readFileSync(argv[1], 'utf8')).export({ type: 'spki', format: 'der' });
  } catch (e) {
    console.error(`cannot read input: ${e.message}`);
    return 2;
  }
  const hint = createHash('sha256').update(spki).digest('base64');
  const root = { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] };
  const keys = { [hint]: { rawBytes: spki, keyDetails: PKIX_ECDSA_P256_SHA_256 } };
  const verifier = new Verifier(toTrustMaterial(root, keys), {
    tlogThreshold: 0,
    ctlogThreshold: 0,
    timestampThreshold: 0,
  });
  try {
    const bundle = bundleFromJSON(json);
    if (bundle.content.$case !== 'dsseEnvelope') {
      throw new Error(`bundle content is ${bundle.content.$case}, expected dsseEnvelope`);
    }
    if (bundle.content.dsseEnvelope.payloadType !== IN_TOTO) {
      throw new Error(`payloadType is ${bundle.content.dsseEnvelope.payloadType}, expected ${IN_TOTO}`);
    }
    verifier.verify(toSignedEntity(bundle));
    console.log(`OK: @sigstore/verify verified the bundle (${bundle.mediaType}, key hint ${hint})`);
    return 0;
  } catch (e) {
    console.error(`INVALID: ${e.name}: ${e.code ?? ''} ${e.message}`);
    return 1;
  }
}

process.exit(main(process.argv.slice(2)));
