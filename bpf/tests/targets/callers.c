// SPDX-License-Identifier: Apache-2.0
/*
 * A probe target whose library function lg_lib_f (callee_lib.c, linked as liblgcallee.so) is called from
 * outside and from inside its own library, a known number of times each. Same protocol as counted.c:
 * prints "ready <pid>", then one reply line per command:
 *   e N   the program calls lg_lib_f N times (external calls)          -> "ok <ns per call>"
 *   i N   lg_lib_g makes N calls of lg_lib_f inside the library        -> "ok <ns per call>"
 *   m N   a second copy of the library (dlmopen, another mapping of the same file) gets N calls of its
 *         lg_lib_f from lg_lib_call of the first copy                   -> "ok"
 *   t N   the program calls lg_lib_h N times (PLT), which jumps to lg_lib_f (a tail call) -> "ok"
 *   T N   the same through the GOT (call *lg_lib_h@GOTPCREL(%rip), as -fno-plt code does) -> "ok"
 *   G N   the program calls lg_lib_f through the GOT (external calls)  -> "ok"
 * and exits 0 at end of input.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

void lg_lib_f(unsigned long x);
void lg_lib_g(unsigned long n);
void lg_lib_call(void (*fn)(unsigned long), unsigned long n);
void lg_lib_h(unsigned long x);

/* `call *fn@GOTPCREL(%rip)`, the call sequence of code built with -fno-plt (no PLT stub in between). */
#define CALL_THROUGH_GOT(fn, x)                                                                       \
	do {                                                                                          \
		register unsigned long arg __asm__("rdi") = (x);                                      \
		__asm__ volatile("call *" #fn "@GOTPCREL(%%rip)"                                      \
				 : "+r"(arg)                                                          \
				 :                                                                    \
				 : "rax", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "memory", "cc"); \
	} while (0)

__attribute__((noinline)) static void h_through_got(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		CALL_THROUGH_GOT(lg_lib_h, i);
}

__attribute__((noinline)) static void f_through_got(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		CALL_THROUGH_GOT(lg_lib_f, i);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* lg_lib_f of a second, independent copy of the library (its own mappings of the same file). */
static void (*second_copy_f(void))(unsigned long)
{
	static void (*fn)(unsigned long);
	Dl_info info;
	void *handle;

	if (fn)
		return fn;
	if (!dladdr((void *)lg_lib_f, &info) || !info.dli_fname)
		return NULL;
	handle = dlmopen(LM_ID_NEWLM, info.dli_fname, RTLD_NOW | RTLD_LOCAL);
	if (!handle)
		return NULL;
	fn = (void (*)(unsigned long))dlsym(handle, "lg_lib_f");
	return fn;
}

int main(void)
{
	char line[128];

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready %d\n", (int)getpid());
	while (fgets(line, sizeof(line), stdin)) {
		unsigned long n = 0;
		double start = now_ns();

		if (sscanf(line, "e %lu", &n) == 1) {
			for (unsigned long i = 0; i < n; i++)
				lg_lib_f(i);
			printf("ok %.3f\n", n ? (now_ns() - start) / (double)n : 0.0);
		} else if (sscanf(line, "i %lu", &n) == 1) {
			lg_lib_g(n);
			printf("ok %.3f\n", n ? (now_ns() - start) / (double)n : 0.0);
		} else if (sscanf(line, "t %lu", &n) == 1) {
			for (unsigned long i = 0; i < n; i++)
				lg_lib_h(i);
			printf("ok\n");
		} else if (sscanf(line, "T %lu", &n) == 1) {
			h_through_got(n);
			printf("ok\n");
		} else if (sscanf(line, "G %lu", &n) == 1) {
			f_through_got(n);
			printf("ok\n");
		} else if (sscanf(line, "m %lu", &n) == 1) {
			void (*fn)(unsigned long) = second_copy_f();

			if (!fn || fn == lg_lib_f) {
				printf("error no second copy of the library: %s\n", dlerror());
				continue;
			}
			lg_lib_call(fn, n);
			printf("ok\n");
		} else {
			printf("error unknown command\n");
		}
	}
	return 0;
}
