// SPDX-License-Identifier: Apache-2.0
// Attach a file to an image as an OCI referrer with @sigstore/oci (the library sigstore-js uses to push
// attestations to registries), a registry client linkguard did not write.
//
// usage: node sigstore_oci_attach.mjs IMAGE_NAME IMAGE_DIGEST FILE MEDIA_TYPE [KEY=VALUE]...
//   IMAGE_NAME   registry/repository without tag, e.g. 127.0.0.1:5000/app (@sigstore/oci speaks plain HTTP to
//                localhost and 127.0.0.1, HTTPS to anything else)
//   MEDIA_TYPE   the artifactType of the manifest and the media type of its one layer
//   KEY=VALUE    manifest annotations (@sigstore/oci adds org.opencontainers.image.created itself)
// prints: the pushed manifest's descriptor as JSON ({"mediaType", "digest", "size", "subjectDigest"?})
// exit:   0 pushed, 1 the push failed, 2 usage or unreadable input
//
// What @sigstore/oci does (0.6.0): PUTs the manifest by digest; when the registry answers without an
// `OCI-Subject` header or GET /v2/<name>/referrers/<zero digest> is not 200, it also adds the manifest to the
// `sha256-<hex>` referrers index of the distribution spec's tag schema itself.
//
// @sigstore/oci 0.6.0 requires `promise-retry` without declaring it (make-fetch-happen up to 15.0.3 brought it
// in; later versions depend on @gar/promise-retry instead), so package.json lists promise-retry directly.

import { readFileSync } from 'node:fs';

import { attachArtifactToImage } from '@sigstore/oci';

async function main(argv) {
  if (argv.length < 4) {
    console.error('usage: node sigstore_oci_attach.mjs IMAGE_NAME IMAGE_DIGEST FILE MEDIA_TYPE [KEY=VALUE]...');
    return 2;
  }
  const [imageName, imageDigest, file, mediaType, ...pairs] = argv;
  const annotations = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at < 1) {
      console.error(`annotation ${JSON.stringify(pair)} is not KEY=VALUE`);
      return 2;
    }
    annotations[pair.slice(0, at)] = pair.slice(at + 1);
  }
  let artifact;
  try {
    artifact = readFileSync(file);
  } catch (e) {
    console.error(`cannot read ${file}: ${e.message}`);
    return 2;
  }
  try {
    const descriptor = await attachArtifactToImage({
      imageName,
      imageDigest,
      artifact,
      mediaType,
      annotations,
      // Anonymous: no sign-in round trip.
      credentials: undefined,
      fetchOpts: { retry: { retries: 2 } },
    });
    console.log(JSON.stringify(descriptor));
    return 0;
  } catch (e) {
    console.error(`FAILED: ${e.name}: ${e.message}${e.cause ? `: ${e.cause.message ?? e.cause}` : ''}`);
    return 1;
  }
}

process.exit(await main(process.argv.slice(2)));
