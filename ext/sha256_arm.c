/* SHA-256 block function with the ARMv8 cryptography extension (AArch64).
 *
 * Built without a global -march flag: only this function is compiled for
 * the SHA-2 instructions (target attribute), and it is called only after
 * pe__cpu_has_armv8_sha2() said the CPU has them. */
#define PE_HASH_INTERNAL
#include "pe_hash.h"

#ifdef PE_HAVE_SHA256_ARMV8

#if defined(_MSC_VER) && !defined(__clang__)
#  include <arm64_neon.h>
#else
#  include <arm_neon.h>
#endif

#if defined(__ARM_FEATURE_SHA2) || defined(__ARM_FEATURE_CRYPTO)
#  define PE_TARGET_ARMV8_SHA2 /* already enabled for the whole build */
#elif defined(__clang__) /* clang >= 16, also as clang-cl */
#  define PE_TARGET_ARMV8_SHA2 __attribute__((target("sha2")))
#elif defined(__GNUC__)
#  define PE_TARGET_ARMV8_SHA2 __attribute__((target("+crypto")))
#else
#  define PE_TARGET_ARMV8_SHA2 /* MSVC: the intrinsics need no opt-in */
#endif

/* Four rounds: vsha256hq gives the new ABCD and vsha256h2q the new EFGH,
 * and the latter needs the ABCD from before these rounds. */
#define FOUR_ROUNDS(t, w)                                             \
    do {                                                              \
        uint32x4_t wk_ = vaddq_u32((w), vld1q_u32(&pe__sha256_k[t])); \
        uint32x4_t abcd_ = abcd;                                      \
        abcd = vsha256hq_u32(abcd, efgh, wk_);                        \
        efgh = vsha256h2q_u32(efgh, abcd_, wk_);                      \
    } while (0)

/* Next four schedule words, replacing w0 (the oldest group):
 * su0 adds sigma0(W[t-15]) to W[t-16]; su1 adds W[t-7] and sigma1(W[t-2]). */
#define SCHEDULE(w0, w1, w2, w3) w0 = vsha256su1q_u32(vsha256su0q_u32((w0), (w1)), (w2), (w3))

PE_TARGET_ARMV8_SHA2
void pe__sha256_blocks_armv8(uint32_t state[8], const uint8_t *data, size_t nblocks)
{
    uint32x4_t abcd = vld1q_u32(&state[0]);
    uint32x4_t efgh = vld1q_u32(&state[4]);

    while (nblocks--) {
        const uint32x4_t abcd0 = abcd, efgh0 = efgh;
        /* Message words are big-endian: reverse the bytes of each lane. */
        uint32x4_t w0 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(data + 0)));
        uint32x4_t w1 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(data + 16)));
        uint32x4_t w2 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(data + 32)));
        uint32x4_t w3 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(data + 48)));
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

        abcd = vaddq_u32(abcd, abcd0);
        efgh = vaddq_u32(efgh, efgh0);
        data += 64;
    }

    vst1q_u32(&state[0], abcd);
    vst1q_u32(&state[4], efgh);
}

#else
/* ISO C forbids an empty translation unit. */
typedef int pe__sha256_armv8_not_built;
#endif
