// SPDX-License-Identifier: Apache-2.0
/*
 * A probe target for tests/observe.rs, built by gcc at test time. Its functions run a known number of
 * times, so the observations can be checked exactly.
 *
 * Interactive (no arguments): prints "ready <pid>", then one command per stdin line, one answer line each:
 *   h N      call lg_hot N times                      -> "ok <ns per call>"
 *   t T N    T threads each call lg_hot N times       -> "ok"
 *   c        call lg_cold once                        -> "ok"
 *   x        exec its own path again (same pid)       -> "ready <pid>" from the new image
 * and exits 0 at end of input. lg_never is never called.
 *
 * One-shot: `observe_target run N [MS]` calls lg_hot N times, sleeps MS milliseconds, calls lg_cold once
 * and exits with status 3 (a process that lives a few milliseconds, and a status `observe -- CMD` must pass
 * on).
 *
 * -DLG_VARIANT=1 builds a different binary with the same symbols: a padding function placed before
 * lg_hot moves every function, so an offset from the other build lands mid-instruction.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long lg_sink;

#if LG_VARIANT
__attribute__((noinline, noclone, used)) void lg_padding(unsigned long x)
{
	for (unsigned long i = 0; i < x; i++)
		lg_sink = lg_sink * 31 + i + 0x1234567;
}
#endif

/* noinline + noclone: each call must stay a real call to this exact symbol. */
__attribute__((noinline, noclone, used)) void lg_hot(unsigned long x)
{
	lg_sink += x;
}

__attribute__((noinline, noclone, used)) void lg_cold(void)
{
	lg_sink ^= 0x5a5a;
}

__attribute__((noinline, noclone, used)) void lg_never(void)
{
	lg_sink -= 7;
}

static void *hot_thread(void *arg)
{
	unsigned long n = (unsigned long)arg;

	for (unsigned long i = 0; i < n; i++)
		lg_hot(i);
	return NULL;
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	char line[128];

	if ((argc == 3 || argc == 4) && strcmp(argv[1], "run") == 0) {
		unsigned long n = strtoul(argv[2], NULL, 10);

		for (unsigned long i = 0; i < n; i++)
			lg_hot(i);
		if (argc == 4)
			usleep((useconds_t)strtoul(argv[3], NULL, 10) * 1000);
		lg_cold();
		return 3;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready %d\n", (int)getpid());
	while (fgets(line, sizeof(line), stdin)) {
		unsigned long n = 0, threads = 0;

		if (sscanf(line, "t %lu %lu", &threads, &n) == 2 && threads > 0 && threads <= 64) {
			pthread_t tids[64];

			for (unsigned long t = 0; t < threads; t++)
				if (pthread_create(&tids[t], NULL, hot_thread, (void *)n) != 0)
					return 2;
			for (unsigned long t = 0; t < threads; t++)
				pthread_join(tids[t], NULL);
			printf("ok\n");
		} else if (sscanf(line, "h %lu", &n) == 1) {
			double start = now_ns();

			for (unsigned long i = 0; i < n; i++)
				lg_hot(i);
			printf("ok %.3f\n", n ? (now_ns() - start) / (double)n : 0.0);
		} else if (line[0] == 'x') {
			execl(argv[0], argv[0], (char *)NULL);
			printf("error exec failed\n");
		} else if (line[0] == 'c') {
			lg_cold();
			printf("ok\n");
		} else {
			printf("error unknown command\n");
		}
	}
	return 0;
}
