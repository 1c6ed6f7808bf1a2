// SPDX-License-Identifier: Apache-2.0
/*
 * The shared library of the callers.c target (built as liblgcallee.so at test time, bpf/tests/support).
 * lg_lib_f is exported and called three ways: from the main program (a call from outside the library),
 * from lg_lib_g inside the library (an internal call, through the PLT since lg_lib_f is interposable), by a
 * tail call from lg_lib_h (called by the program: the program's return address is on the stack), and
 * by lg_lib_call through a function pointer (callers.c passes the lg_lib_f of a second copy of this library
 * loaded with dlmopen: another object mapped from the same file).
 */

volatile unsigned long lg_lib_sink;

__attribute__((noinline, noclone, used)) void lg_lib_f(unsigned long x)
{
	lg_lib_sink += x;
}

/* n internal calls of lg_lib_f. */
__attribute__((noinline, noclone, used)) void lg_lib_g(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		lg_lib_f(i);
}

/*
 * A tail call of lg_lib_f: the jump leaves the caller's return address on the stack, so lg_lib_f seems called
 * from wherever lg_lib_h was called. Written as assembly so that the compiler cannot make it anything else.
 */
__attribute__((naked, noinline, used)) void lg_lib_h(unsigned long x)
{
	__asm__("jmp lg_lib_f@PLT");
}

/* n calls of fn, made from this library's code. */
__attribute__((noinline, noclone, used)) void lg_lib_call(void (*fn)(unsigned long), unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		fn(i);
}
