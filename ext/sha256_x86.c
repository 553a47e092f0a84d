/* SHA-256 with the x86 SHA extensions (SHA-NI).
 *
 * The engine (round macros, padding, digest store) is PE_SHANI_SHA256 in
 * pe_hash.h, shared with ext/der.c, which interleaves its DER walk with the
 * rounds. Built without any global -m flag: only the function here is
 * compiled for SHA + SSE4.1 + SSSE3 (PE_TARGET_SHANI), and it is called only
 * after pe__cpu_has_shani() said the CPU has them. */
#define PE_HASH_INTERNAL
#define PE_SHANI_ENGINE
#include "pe_hash.h"

#ifdef PE_HAVE_SHA256_X86

/* The whole of SHA-256, padding included, in one call. Messages here are
 * mostly short (a 300-600 byte SubjectPublicKeyInfo is 5-10 blocks), so the
 * per-call work counts: the state stays in registers from the initial value
 * to the digest, the final one or two blocks are built in a local buffer
 * while the whole blocks are hashed straight from the input, and the digest
 * is byte-swapped out of the registers. */
PE_TARGET_SHANI
void pe__sha256_shani(const uint8_t *data, size_t len, uint8_t out[32])
{
    PE_SHANI_SHA256(data, len, out, (void)0);
}

#else
/* ISO C forbids an empty translation unit. */
typedef int pe__sha256_x86_not_built;
#endif
