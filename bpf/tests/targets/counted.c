// SPDX-License-Identifier: Apache-2.0
/*
 * A probe target whose functions run a known number of times, on command, so tests can attach first
 * and then count exactly. Built by gcc at test time (bpf/tests/support).
 *
 * Prints "ready <pid>" (pid as seen in its own pid namespace), then reads one command per stdin line and
 * answers one line on stdout:
 *   h N      call lg_hot N times from this thread        -> "ok <ns per call>"
 *   t T N    T threads each call lg_hot N times          -> "ok"
 *   c        call lg_cold once                           -> "ok"
 * and exits 0 at end of input. lg_never is never called.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long lg_sink;

/* noinline + noclone: the call must stay a real call to this exact symbol (a clone would be another address). */
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

int main(void)
{
	char line[128];

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready %d\n", (int)getpid());
	while (fgets(line, sizeof(line), stdin)) {
		unsigned long n = 0, threads = 0;

		if (sscanf(line, "h %lu", &n) == 1) {
			double start = now_ns();

			for (unsigned long i = 0; i < n; i++)
				lg_hot(i);
			printf("ok %.3f\n", n ? (now_ns() - start) / (double)n : 0.0);
		} else if (sscanf(line, "t %lu %lu", &threads, &n) == 2 && threads > 0 && threads <= 64) {
			pthread_t tids[64];

			for (unsigned long t = 0; t < threads; t++)
				if (pthread_create(&tids[t], NULL, hot_thread, (void *)n) != 0)
					return 2;
			for (unsigned long t = 0; t < threads; t++)
				pthread_join(tids[t], NULL);
			printf("ok\n");
		} else if (line[0] == 'c') {
			lg_cold();
			printf("ok\n");
		} else {
			printf("error unknown command\n");
		}
	}
	return 0;
}
