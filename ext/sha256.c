/* SHA-256 (FIPS 180-4): the portable block function, the padding driver of
 * the portable and ARMv8 paths, and the run-time dispatch. The ARMv8 block
 * function lives in sha256_arm.c; the x86 SHA-NI path (a one-shot function,
 * padding included) in sha256_x86.c. */
#define PE_HASH_INTERNAL
#include "pe_hash.h"

#include <string.h>

const uint32_t pe__sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t sha256_iv[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

/* ---- Portable block function ------------------------------------------ */

#define ROTR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* Byte-wise loads and stores: no alignment or endianness assumptions. */
static uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The message schedule is kept as a 16-word ring: W[t] only ever needs
 * W[t-2], W[t-7], W[t-15] and W[t-16], and W[t-16] is the slot it replaces. */
#define SCHED32(w, t)                                                                \
    (w[(t) & 15] += (ROTR32(w[((t) - 15) & 15], 7) ^ ROTR32(w[((t) - 15) & 15], 18)  \
                     ^ (w[((t) - 15) & 15] >> 3))                                    \
                    + w[((t) - 7) & 15]                                              \
                    + (ROTR32(w[((t) - 2) & 15], 17) ^ ROTR32(w[((t) - 2) & 15], 19) \
                       ^ (w[((t) - 2) & 15] >> 10)))

/* One round. Instead of shifting a..h down one variable per round, callers
 * rotate the argument order, so eight consecutive rounds move no data. */
#define ROUND32(a, b, c, d, e, f, g, h, t, wt)                                  \
    do {                                                                        \
        uint32_t t1_ = (h) + (ROTR32(e, 6) ^ ROTR32(e, 11) ^ ROTR32(e, 25))     \
                       + (((e) & (f)) ^ (~(e) & (g))) + pe__sha256_k[t] + (wt); \
        (d) += t1_;                                                             \
        (h) = t1_ + (ROTR32(a, 2) ^ ROTR32(a, 13) ^ ROTR32(a, 22))              \
              + (((a) & (b)) ^ ((a) & (c)) ^ ((b) & (c)));                      \
    } while (0)

#define EIGHT_ROUNDS32(t, W)                              \
    do {                                                  \
        ROUND32(a, b, c, d, e, f, g, h, t, W(t));         \
        ROUND32(h, a, b, c, d, e, f, g, t + 1, W(t + 1)); \
        ROUND32(g, h, a, b, c, d, e, f, t + 2, W(t + 2)); \
        ROUND32(f, g, h, a, b, c, d, e, t + 3, W(t + 3)); \
        ROUND32(e, f, g, h, a, b, c, d, t + 4, W(t + 4)); \
        ROUND32(d, e, f, g, h, a, b, c, t + 5, W(t + 5)); \
        ROUND32(c, d, e, f, g, h, a, b, t + 6, W(t + 6)); \
        ROUND32(b, c, d, e, f, g, h, a, t + 7, W(t + 7)); \
    } while (0)

#define W_LOADED(t) w[t]         /* rounds 0..15: the message words themselves */
#define W_SCHED(t) SCHED32(w, t) /* rounds 16..63: expanded in place */

void pe__sha256_blocks_portable(uint32_t state[8], const uint8_t *data, size_t nblocks)
{
    while (nblocks--) {
        uint32_t w[16];
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        int t;

        for (t = 0; t < 16; t++)
            w[t] = load_be32(data + 4 * t);

        for (t = 0; t < 16; t += 8)
            EIGHT_ROUNDS32(t, W_LOADED);
        for (t = 16; t < 64; t += 8)
            EIGHT_ROUNDS32(t, W_SCHED);

        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
        data += 64;
    }
}

/* ---- Padding driver ----------------------------------------------------- */

void pe__sha256_run(pe_sha256_blocks_fn blocks, const uint8_t *data, size_t len, uint8_t out[32])
{
    uint32_t state[8];
    uint8_t tail[128];
    size_t full = len / 64;
    int i;

    memcpy(state, sha256_iv, sizeof state);
    /* Whole blocks straight from the caller's buffer; data may be NULL when
     * len is 0, so it is neither offset nor read then. */
    if (full)
        blocks(state, data, full);
    blocks(state, tail, pe__md_tail(data, len, 64, 8, tail));

    for (i = 0; i < 8; i++)
        store_be32(out + 4 * i, state[i]);
}

/* ---- Dispatch ----------------------------------------------------------- */

typedef struct {
    const char *name;
    /* The whole digest in one call, padding included. */
    void (*oneshot)(const uint8_t *data, size_t len, uint8_t out[32]);
    int (*available)(void);
} sha256_impl;

static int always(void)
{
    return 1;
}

static void sha256_portable(const uint8_t *data, size_t len, uint8_t out[32])
{
    pe__sha256_run(pe__sha256_blocks_portable, data, len, out);
}

#ifdef PE_HAVE_SHA256_ARMV8
static void sha256_armv8(const uint8_t *data, size_t len, uint8_t out[32])
{
    pe__sha256_run(pe__sha256_blocks_armv8, data, len, out);
}
#endif

static const sha256_impl impl_portable = {"portable", sha256_portable, always};
#ifdef PE_HAVE_SHA256_X86
static const sha256_impl impl_shani = {"sha-ni", pe__sha256_shani, pe__cpu_has_shani};
#endif
#ifdef PE_HAVE_SHA256_ARMV8
static const sha256_impl impl_armv8 = {"armv8", sha256_armv8, pe__cpu_has_armv8_sha2};
#endif

/* Every implementation this build knows, fastest first. */
static const sha256_impl *const all_impls[] = {
#ifdef PE_HAVE_SHA256_X86
    &impl_shani,
#endif
#ifdef PE_HAVE_SHA256_ARMV8
    &impl_armv8,
#endif
    &impl_portable,
};
#define N_IMPLS (sizeof all_impls / sizeof all_impls[0])

/* What pe_hash_init() found out, read without locks afterwards. Written
 * only by pe_hash_init() (under the GIL, at import, before any hashing
 * thread exists):
 *   active       the chosen implementation; it starts as the portable path
 *                so a digest taken before init is still correct;
 *   probed       1 once `usable` holds the CPU probe of every implementation,
 *                so that pe_sha256_available() / pe_sha256_with() need not
 *                probe again: on x86 a probe is CPUID, which a hypervisor
 *                traps (microseconds per call). Before init they probe. */
static const sha256_impl *active = &impl_portable;
static unsigned char usable[N_IMPLS];
static int probed = 0;

void pe_hash_init(int force_portable)
{
    size_t i;
    for (i = 0; i < N_IMPLS; i++)
        usable[i] = all_impls[i]->available() != 0;
    probed = 1;
    active = &impl_portable;
    if (force_portable)
        return;
    for (i = 0; i < N_IMPLS; i++) {
        if (usable[i]) {
            active = all_impls[i];
            return;
        }
    }
}

const char *pe_sha256_active(void)
{
    return active->name;
}

/* Index of the named implementation in all_impls, or -1. */
static int find_impl(const char *name)
{
    size_t i;
    if (name == NULL)
        return -1;
    for (i = 0; i < N_IMPLS; i++) {
        if (strcmp(all_impls[i]->name, name) == 0)
            return (int)i;
    }
    return -1;
}

static int impl_usable(int i)
{
    if (i < 0)
        return 0;
    return probed ? usable[i] : all_impls[i]->available() != 0;
}

int pe_sha256_available(const char *name)
{
    return impl_usable(find_impl(name));
}

int pe_sha256_with(const char *name, const uint8_t *data, size_t len, uint8_t out[32])
{
    int i = find_impl(name);
    if (!impl_usable(i))
        return -1;
    all_impls[i]->oneshot(data, len, out);
    return 0;
}

void pe__sha256(const uint8_t *data, size_t len, uint8_t out[32])
{
    active->oneshot(data, len, out);
}

int pe__sha256_active_is_shani(void)
{
#ifdef PE_HAVE_SHA256_X86
    return active == &impl_shani;
#else
    return 0;
#endif
}
