/* SHA-256 block function with the x86 SHA extensions (SHA-NI).
 *
 * Built without any global -m flag: on gcc/clang only this function is
 * compiled for SHA + SSE4.1 + SSSE3 (target attribute), and it is called
 * only after pe__cpu_has_shani() said the CPU has them. MSVC exposes the
 * intrinsics unconditionally. */
#define PE_HASH_INTERNAL
#include "pe_hash.h"

#ifdef PE_HAVE_SHA256_X86

#include <immintrin.h>
#if defined(_MSC_VER) && defined(__clang__)
/* Older clang-cl (clang 14 here) leaves these out of <immintrin.h> unless the
 * whole build targets them (-msha ...); the sub-headers themselves are fine. */
#  include <tmmintrin.h>
#  include <smmintrin.h>
#  include <shaintrin.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define PE_TARGET_SHANI __attribute__((target("sha,sse4.1,ssse3")))
#else
#  define PE_TARGET_SHANI
#endif

/* The SHA-NI round instruction works on the state split as ABEF and CDGH
 * (a in the top lane), not as the ABCD / EFGH of the standard, so the state
 * is shuffled into that layout on entry and back on exit.
 *
 * _mm_sha256rnds2_epu32(cdgh, abef, wk) does two rounds with the two low
 * lanes of wk (W[t] + K[t]) and returns the new ABEF; the old ABEF becomes
 * the new CDGH. Four rounds are therefore two calls, the second one fed the
 * high half of wk. */
#define FOUR_ROUNDS(t, w)                                                                     \
    do {                                                                                      \
        __m128i wk_ = _mm_add_epi32((w), _mm_loadu_si128((const __m128i *)&pe__sha256_k[t])); \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk_);                                        \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk_, 0x0e));               \
    } while (0)

/* Next four schedule words from the previous sixteen (w0 oldest):
 *   msg1(w0, w1)          = W[t-16] + sigma0(W[t-15])          (lane-wise)
 *   + alignr(w3, w2, 4)   = W[t-7]
 *   msg2(.., w3)          adds sigma1(W[t-2]), including the words it just made.
 * The result replaces w0, the group that is no longer needed. */
#define SCHEDULE(w0, w1, w2, w3)                                                         \
    w0 = _mm_sha256msg2_epu32(                                                           \
        _mm_add_epi32(_mm_sha256msg1_epu32((w0), (w1)), _mm_alignr_epi8((w3), (w2), 4)), \
        (w3))

PE_TARGET_SHANI
void pe__sha256_blocks_shani(uint32_t state[8], const uint8_t *data, size_t nblocks)
{
    /* Byte order of each 32-bit lane reversed: message words are big-endian. */
    const __m128i bswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    __m128i abef, cdgh, tmp;

    /* [a b c d], [e f g h] (lane 0 first) -> abef = [f e b a], cdgh = [h g d c]. */
    tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xb1); /* b a d c */
    cdgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1b); /* h g f e */
    abef = _mm_alignr_epi8(tmp, cdgh, 8);                                          /* f e b a */
    cdgh = _mm_blend_epi16(cdgh, tmp, 0xf0);                                       /* h g d c */

    while (nblocks--) {
        const __m128i abef0 = abef, cdgh0 = cdgh;
        __m128i w0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 0)), bswap);
        __m128i w1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16)), bswap);
        __m128i w2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 32)), bswap);
        __m128i w3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 48)), bswap);
        int t;

        FOUR_ROUNDS(0, w0);
        FOUR_ROUNDS(4, w1);
        FOUR_ROUNDS(8, w2);
        FOUR_ROUNDS(12, w3);
        /* Rounds 16..63: the four message registers rotate roles. */
        for (t = 16; t < 64; t += 16) {
            SCHEDULE(w0, w1, w2, w3);
            FOUR_ROUNDS(t, w0);
            SCHEDULE(w1, w2, w3, w0);
            FOUR_ROUNDS(t + 4, w1);
            SCHEDULE(w2, w3, w0, w1);
            FOUR_ROUNDS(t + 8, w2);
            SCHEDULE(w3, w0, w1, w2);
            FOUR_ROUNDS(t + 12, w3);
        }

        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
        data += 64;
    }

    /* Back to [a b c d], [e f g h]. */
    tmp = _mm_shuffle_epi32(abef, 0x1b);  /* a b e f */
    cdgh = _mm_shuffle_epi32(cdgh, 0xb1); /* g h c d */
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(tmp, cdgh, 0xf0)); /* a b c d */
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(cdgh, tmp, 8));    /* e f g h */
}

#else
/* ISO C forbids an empty translation unit. */
typedef int pe__sha256_x86_not_built;
#endif
