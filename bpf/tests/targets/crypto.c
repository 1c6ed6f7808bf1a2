// SPDX-License-Identifier: Apache-2.0
/*
 * A probe target that calls libcrypto's SHA256() a known number of times, to probe a function of a shared
 * library. Same protocol as counted.c: "ready <pid>", then "s N" -> N calls -> "ok"; exits at end of input.
 * The prototype is declared here (OpenSSL's public, stable SHA256 one-shot API) and the program links
 * libcrypto.so.3 directly, so the test needs the runtime library only, not libssl-dev.
 */
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>

unsigned char *SHA256(const unsigned char *data, size_t count, unsigned char *md_buf);

int main(void)
{
	char line[128];
	unsigned char digest[32];
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
