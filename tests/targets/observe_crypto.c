// SPDX-License-Identifier: Apache-2.0
/*
 * A probe target for tests/observe.rs that calls libcrypto's SHA256() a known number of times: a library
 * function, probed through the process's own mapping of libcrypto.so.3. Prints "ready <pid>", then
 * "s N" -> N calls -> "ok <first digest byte>"; exits 0 at end of input. Links -lcrypto (libssl-dev).
 */
#include <openssl/sha.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	char line[128];
	unsigned char digest[SHA256_DIGEST_LENGTH];
	unsigned char data[64] = "linkguard";

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready %d\n", (int)getpid());
	while (fgets(line, sizeof(line), stdin)) {
		unsigned long n = 0;

		if (sscanf(line, "s %lu", &n) == 1) {
			for (unsigned long i = 0; i < n; i++) {
				data[0] = (unsigned char)i;
				SHA256(data, sizeof(data), digest);
			}
			printf("ok %02x\n", digest[0]);
		} else {
			printf("error unknown command\n");
		}
	}
	return 0;
}
