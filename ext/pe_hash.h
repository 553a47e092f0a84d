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
 * != 0 selects the portable C path whatever the CPU offers. The probe
 * results are kept for pe_sha256_available() and pe_sha256_with(), so no
 * later call probes the CPU again (CPUID costs microseconds in a VM). */
void pe_hash_init(int force_portable);

/* Name of the SHA-256 implementation in use: "sha-ni", "armv8" or "portable". */
const char *pe_sha256_active(void);

/* 1 if the named SHA-256 implementation can run on this CPU, else 0
 * (from the probe pe_hash_init() made; before it, probes). */
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

#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#  define PE_ALWAYS_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#  define PE_ALWAYS_INLINE static __forceinline
#else
#  define PE_ALWAYS_INLINE static
#endif

/* The padded end of a len-byte message (FIPS 180-4 section 5.1), shared by
 * SHA-1, SHA-256 (every path) and SHA-384/512: its last len % block bytes,
 * 0x80, zeros and the length in bits, big-endian, in the last len_field bytes
 * (8 with 64-byte blocks, 16 with 128-byte blocks) of tail[0..block) or, when
 * the length does not fit after the 0x80 byte, of tail[0..2 * block). Returns
 * the number of blocks written, 1 or 2; tail holds 2 * block bytes. The bit
 * count is computed in 64 bits (the shift comes after the widening, so a
 * 32-bit size_t cannot overflow); a 16-byte field gets the bits shifted out
 * of the low word in its high word. data may be NULL when len is 0.
 * Inline, so that the constant block sizes fold away. */
PE_ALWAYS_INLINE size_t pe__md_tail(const uint8_t *data, size_t len, size_t block, size_t len_field,
                                     uint8_t *tail)
{
    size_t rem = len % block, blocks = rem < block - len_field ? 1 : 2, end, i;
    uint64_t low = (uint64_t)len << 3, high = (uint64_t)len >> 61;
    memset(tail, 0, 2 * block);
    if (rem)
        memcpy(tail, data + (len - rem), rem);
    tail[rem] = 0x80;
    end = blocks * block;
    for (i = 0; i < 8; i++)
        tail[end - 1 - i] = (uint8_t)(low >> (8 * i));
    if (len_field == 16)
        for (i = 0; i < 8; i++)
            tail[end - 9 - i] = (uint8_t)(high >> (8 * i));
    return blocks;
}

/* Compress nblocks consecutive 64-byte blocks at data into state[8]. */
typedef void (*pe_sha256_blocks_fn)(uint32_t state[8], const uint8_t *data, size_t nblocks);

void pe__sha256_blocks_portable(uint32_t state[8], const uint8_t *data, size_t nblocks);
#ifdef PE_HAVE_SHA256_ARMV8
void pe__sha256_blocks_armv8(uint32_t state[8], const uint8_t *data, size_t nblocks);
#endif

#ifdef PE_HAVE_SHA256_X86
/* The whole SHA-256 (padding included) with SHA-NI in one call, the state
 * kept in registers throughout (ext/sha256_x86.c). */
void pe__sha256_shani(const uint8_t *data, size_t len, uint8_t out[32]);
#endif

/* 1 when pe__sha256() runs the SHA-NI code, so that a caller may use
 * PE_SHANI_SHA256 (below) itself. */
int pe__sha256_active_is_shani(void);

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

/* ---- The SHA-NI engine, for the sources that compile it -------------------
 * (define PE_SHANI_ENGINE too before including this header). Everything here
 * must run only in functions marked PE_TARGET_SHANI, and only once
 * pe__cpu_has_shani() said yes. ext/sha256_x86.c builds the plain digest
 * with it; ext/der.c a digest interleaved with its DER walk. */
#if defined(PE_HAVE_SHA256_X86) && defined(PE_SHANI_ENGINE)

#include <immintrin.h>
#include <string.h>
#if defined(_MSC_VER) && defined(__clang__)
/* Older clang-cl (clang 14 here) leaves these out of <immintrin.h> unless the
 * whole build targets them (-msha ...); the sub-headers themselves are fine. */
#  include <tmmintrin.h>
#  include <smmintrin.h>
#  include <shaintrin.h>
#endif

/* Built without any global -m flag: on gcc/clang only the functions marked
 * PE_TARGET_SHANI are compiled for SHA + SSE4.1 + SSSE3. MSVC exposes the
 * intrinsics unconditionally. */
#if defined(__GNUC__) || defined(__clang__)
#  define PE_TARGET_SHANI __attribute__((target("sha,sse4.1,ssse3")))
#  define PE_SHANI_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#  define PE_TARGET_SHANI
#  define PE_SHANI_INLINE static __forceinline
#else
#  define PE_TARGET_SHANI
#  define PE_SHANI_INLINE static
#endif

/* The SHA-NI round instruction works on the state split as ABEF and CDGH
 * (a in the top lane), not as the ABCD / EFGH of the standard: abef =
 * [f e b a], cdgh = [h g d c], lane 0 first.
 *
 * _mm_sha256rnds2_epu32(cdgh, abef, wk) does two rounds with the two low
 * lanes of wk (W[t] + K[t]) and returns the new ABEF; the old ABEF becomes
 * the new CDGH. Four rounds are therefore two calls, the second one fed the
 * high half of wk. */
#define PE_SHANI_FOUR_ROUNDS(abef, cdgh, t, w)                                                \
    do {                                                                                      \
        __m128i wk_ = _mm_add_epi32((w), _mm_loadu_si128((const __m128i *)&pe__sha256_k[t])); \
        (cdgh) = _mm_sha256rnds2_epu32((cdgh), (abef), wk_);                                  \
        (abef) = _mm_sha256rnds2_epu32((abef), (cdgh), _mm_shuffle_epi32(wk_, 0x0e));         \
    } while (0)

/* Next four schedule words from the previous sixteen (w0 oldest):
 *   msg1(w0, w1)          = W[t-16] + sigma0(W[t-15])          (lane-wise)
 *   + alignr(w3, w2, 4)   = W[t-7]
 *   msg2(.., w3)          adds sigma1(W[t-2]), including the words it just made.
 * The result replaces w0, the group that is no longer needed. */
#define PE_SHANI_SCHEDULE(w0, w1, w2, w3)                                                \
    (w0) = _mm_sha256msg2_epu32(                                                         \
        _mm_add_epi32(_mm_sha256msg1_epu32((w0), (w1)), _mm_alignr_epi8((w3), (w2), 4)), \
        (w3))

/* The digest, out of the registers: [f e b a], [h g d c] -> a b c d e f g h,
 * each word big-endian. */
PE_TARGET_SHANI
PE_SHANI_INLINE void pe__shani_store(__m128i abef, __m128i cdgh, uint8_t out[32])
{
    const __m128i bswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    __m128i abef_r = _mm_shuffle_epi32(abef, 0x1b); /* a b e f */
    __m128i ghcd = _mm_shuffle_epi32(cdgh, 0xb1);   /* g h c d */
    _mm_storeu_si128((__m128i *)out, _mm_shuffle_epi8(_mm_blend_epi16(abef_r, ghcd, 0xf0), bswap));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_shuffle_epi8(_mm_alignr_epi8(ghcd, abef_r, 8), bswap));
}

/* SHA-256 of data[0:len] into out (32 bytes), the state in registers from
 * the initial value to the digest: the whole blocks straight from data,
 * then the padded tail, built first (it does not depend on the state, so it
 * overlaps with the rounds). HOOK is a statement run after every four
 * rounds, 16 times a block: independent work placed there runs in the
 * shadow of the rounds, which form one chain of dependent instructions
 * (about 130 cycles a block) and leave the integer units idle. A macro, so
 * that the hook is compiled inline. Use inside a PE_TARGET_SHANI function. */
#define PE_SHANI_SHA256(data, len, out, HOOK)                                                          \
    do {                                                                                               \
        const __m128i bswap_ = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);     \
        /* the initial value (FIPS 180-4 section 5.3.3), in the ABEF / CDGH layout */                  \
        __m128i abef_ = _mm_set_epi32(0x6a09e667, (int)0xbb67ae85, 0x510e527f, (int)0x9b05688c);       \
        __m128i cdgh_ = _mm_set_epi32(0x3c6ef372, (int)0xa54ff53a, 0x1f83d9ab, 0x5be0cd19);            \
        __m128i tail_[8];                                                                              \
        const uint8_t *p_ = (data);                                                                    \
        size_t n_ = (len) / 64, pass_;                                                                 \
        size_t tail_blocks_ = pe__md_tail(p_, (len), 64, 8, (uint8_t *)tail_);                            \
        for (pass_ = 0; pass_ < 2; pass_++) {                                                          \
            for (; n_ > 0; n_--, p_ += 64) {                                                           \
                const __m128i abef0_ = abef_, cdgh0_ = cdgh_;                                          \
                __m128i w0_ = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p_ + 0)), bswap_);    \
                __m128i w1_ = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p_ + 16)), bswap_);   \
                __m128i w2_ = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p_ + 32)), bswap_);   \
                __m128i w3_ = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p_ + 48)), bswap_);   \
                int t_;                                                                                \
                PE_SHANI_FOUR_ROUNDS(abef_, cdgh_, 0, w0_);                                            \
                HOOK;                                                                                  \
                PE_SHANI_FOUR_ROUNDS(abef_, cdgh_, 4, w1_);                                            \
                HOOK;                                                                                  \
                PE_SHANI_FOUR_ROUNDS(abef_, cdgh_, 8, w2_);                                            \
                HOOK;                                                                                  \
                PE_SHANI_FOUR_ROUNDS(abef_, cdgh_, 12, w3_);                                           \
                HOOK;                                                                                  \
                /* rounds 16..63: the four message registers rotate roles */                           \
                for (t_ = 16; t_ < 64; t_ += 16) {                                                     \
                    PE_SHANI_SCHEDULE(w0_, w1_, w2_, w3_);                                             \
                    PE_SHANI_FOUR_ROUNDS(abef_, cdgh_, t_, w0_);                                       \
                    HOOK;                                                                              \
                    PE_SHANI_SCHEDULE(w1_, w2_, w3_, w0_);                                             \
                    PE_SHANI_FOUR_ROUNDS(abef_, cdgh_, t_ + 4, w1_);                                   \
                    HOOK;                                                                              \
                    PE_SHANI_SCHEDULE(w2_, w3_, w0_, w1_);                                             \
                    PE_SHANI_FOUR_ROUNDS(abef_, cdgh_, t_ + 8, w2_);                                   \
                    HOOK;                                                                              \
                    PE_SHANI_SCHEDULE(w3_, w0_, w1_, w2_);                                             \
                    PE_SHANI_FOUR_ROUNDS(abef_, cdgh_, t_ + 12, w3_);                                  \
                    HOOK;                                                                              \
                }                                                                                      \
                abef_ = _mm_add_epi32(abef_, abef0_);                                                  \
                cdgh_ = _mm_add_epi32(cdgh_, cdgh0_);                                                  \
            }                                                                                          \
            p_ = (const uint8_t *)tail_;                                                               \
            n_ = tail_blocks_;                                                                         \
        }                                                                                              \
        pe__shani_store(abef_, cdgh_, (out));                                                          \
    } while (0)

#endif /* PE_HAVE_SHA256_X86 && PE_SHANI_ENGINE */

#endif /* PE_HASH_INTERNAL */

#endif
