/* pinengine: message digests in portable C, with SHA-256 dispatched at run
 * time to x86 SHA-NI or ARMv8 crypto instructions where the CPU has them.
 * No OpenSSL, no global state touched after pe_hash_init(). All functions
 * except pe_hash_init() are thread-safe and may run without the GIL. */
#ifndef PE_HASH_H
#define PE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define PE_SHA1   1
#define PE_SHA256 2
#define PE_SHA384 3
#define PE_SHA512 4
#define PE_MAX_DIGEST 64

/* Digest size in bytes for an algorithm id above, 0 for an unknown id. */
size_t pe_hash_len(int alg);

/* One-shot digest of data[0:len] into out (pe_hash_len(alg) bytes).
 * Returns 0, or -1 for an unknown alg. SHA-256 uses the dispatched path. */
int pe_hash(int alg, const uint8_t *data, size_t len, uint8_t *out);

/* Detect the CPU once and choose the SHA-256 implementation. Call before
 * any other function (the module init does, under the GIL). force_portable
 * != 0 selects the portable C path whatever the CPU offers. */
void pe_hash_init(int force_portable);

/* Name of the SHA-256 implementation in use: "sha-ni", "armv8" or "portable". */
const char *pe_sha256_active(void);

/* 1 if the named SHA-256 implementation can run on this CPU, else 0. */
int pe_sha256_available(const char *name);

/* SHA-256 with a named implementation ("portable", "sha-ni", "armv8").
 * Returns 0, or -1 when that implementation is unknown or unavailable here. */
int pe_sha256_with(const char *name, const uint8_t *data, size_t len, uint8_t out[32]);

/* ---- Internal to the hash sources in ext/ (define PE_HASH_INTERNAL first) ----
 * Not part of the interface the Cython module uses. */
#ifdef PE_HASH_INTERNAL

/* Which accelerated SHA-256 paths this build contains. Each needs a compiler
 * that can enable the instructions for one function only (target attribute)
 * or that enables them already; anything else gets the portable path only.
 * ARMv8 crypto is built on AArch64 only (32-bit ARM: portable). */
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
#  if defined(_MSC_VER) || defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 5)
#    define PE_HAVE_SHA256_X86 1
#  endif
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#  if defined(__ARM_FEATURE_SHA2) || defined(__ARM_FEATURE_CRYPTO)
#    define PE_HAVE_SHA256_ARMV8 1 /* the whole build already targets it */
#  elif defined(_MSC_VER) && !defined(__clang__)
#    define PE_HAVE_SHA256_ARMV8 1 /* MSVC declares the intrinsics always */
#  elif defined(__clang__) && __clang_major__ >= 16
#    define PE_HAVE_SHA256_ARMV8 1 /* arm_neon.h usable under target("sha2") */
#  elif !defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 6
#    define PE_HAVE_SHA256_ARMV8 1 /* arm_neon.h usable under target("+crypto") */
#  endif
#endif

/* Compress nblocks consecutive 64-byte blocks at data into state[8]. */
typedef void (*pe_sha256_blocks_fn)(uint32_t state[8], const uint8_t *data, size_t nblocks);

void pe__sha256_blocks_portable(uint32_t state[8], const uint8_t *data, size_t nblocks);
#ifdef PE_HAVE_SHA256_X86
void pe__sha256_blocks_shani(uint32_t state[8], const uint8_t *data, size_t nblocks);
#endif
#ifdef PE_HAVE_SHA256_ARMV8
void pe__sha256_blocks_armv8(uint32_t state[8], const uint8_t *data, size_t nblocks);
#endif

/* SHA-256 round constants (FIPS 180-4 section 4.2.2), shared by all paths. */
extern const uint32_t pe__sha256_k[64];

/* CPU feature probes (ext/cpu.c). Pure: they may be called at any time and
 * from any thread; they return 1 when the instructions can run here. */
int pe__cpu_has_shani(void);
int pe__cpu_has_armv8_sha2(void);

/* Full SHA-256 (padding included) with the given block function. */
void pe__sha256_run(pe_sha256_blocks_fn blocks, const uint8_t *data, size_t len, uint8_t out[32]);

/* The non-dispatched digests (ext/sha1.c, ext/sha512.c). */
void pe__sha1(const uint8_t *data, size_t len, uint8_t out[20]);
void pe__sha512(const uint8_t *data, size_t len, uint8_t out[64]);
void pe__sha384(const uint8_t *data, size_t len, uint8_t out[48]);
/* SHA-256 through the implementation chosen by pe_hash_init(). */
void pe__sha256(const uint8_t *data, size_t len, uint8_t out[32]);

#endif /* PE_HASH_INTERNAL */

#endif
