/* SHA-512 and SHA-384 (FIPS 180-4), portable C. SHA-384 is SHA-512 with its
 * own initial value, truncated to 48 bytes. */
#define PE_HASH_INTERNAL
#include "pe_hash.h"

#include <string.h>

static const uint64_t sha512_k[80] = {
    0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL, 0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL,
    0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL, 0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL,
    0xd807aa98a3030242ULL, 0x12835b0145706fbeULL, 0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL,
    0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL, 0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL,
    0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL, 0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL,
    0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL, 0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL,
    0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL, 0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL,
    0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL, 0x06ca6351e003826fULL, 0x142929670a0e6e70ULL,
    0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL, 0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL,
    0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL, 0x81c2c92e47edaee6ULL, 0x92722c851482353bULL,
    0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL, 0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL,
    0xd192e819d6ef5218ULL, 0xd69906245565a910ULL, 0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL,
    0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL, 0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL,
    0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL, 0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL,
    0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL, 0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL,
    0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL, 0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL,
    0xca273eceea26619cULL, 0xd186b8c721c0c207ULL, 0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL,
    0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL, 0x113f9804bef90daeULL, 0x1b710b35131c471bULL,
    0x28db77f523047d84ULL, 0x32caab7b40c72493ULL, 0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL,
    0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL, 0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL,
};

static const uint64_t sha512_iv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static const uint64_t sha384_iv[8] = {
    0xcbbb9d5dc1059ed8ULL, 0x629a292a367cd507ULL, 0x9159015a3070dd17ULL, 0x152fecd8f70e5939ULL,
    0x67332667ffc00b31ULL, 0x8eb44a8768581511ULL, 0xdb0c2e0d64f98fa7ULL, 0x47b5481dbefa4fa4ULL,
};

#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void store_be64(uint8_t *p, uint64_t v)
{
    int i;
    for (i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Schedule ring and round, as in sha256.c (see the comments there). */
#define SCHED64(w, t)                                                                \
    (w[(t) & 15] += (ROTR64(w[((t) - 15) & 15], 1) ^ ROTR64(w[((t) - 15) & 15], 8)   \
                     ^ (w[((t) - 15) & 15] >> 7))                                    \
                    + w[((t) - 7) & 15]                                              \
                    + (ROTR64(w[((t) - 2) & 15], 19) ^ ROTR64(w[((t) - 2) & 15], 61) \
                       ^ (w[((t) - 2) & 15] >> 6)))

#define ROUND64(a, b, c, d, e, f, g, h, t, wt)                               \
    do {                                                                     \
        uint64_t t1_ = (h) + (ROTR64(e, 14) ^ ROTR64(e, 18) ^ ROTR64(e, 41)) \
                       + (((e) & (f)) ^ (~(e) & (g))) + sha512_k[t] + (wt);  \
        (d) += t1_;                                                          \
        (h) = t1_ + (ROTR64(a, 28) ^ ROTR64(a, 34) ^ ROTR64(a, 39))          \
              + (((a) & (b)) ^ ((a) & (c)) ^ ((b) & (c)));                   \
    } while (0)

#define EIGHT_ROUNDS64(t, W)                              \
    do {                                                  \
        ROUND64(a, b, c, d, e, f, g, h, t, W(t));         \
        ROUND64(h, a, b, c, d, e, f, g, t + 1, W(t + 1)); \
        ROUND64(g, h, a, b, c, d, e, f, t + 2, W(t + 2)); \
        ROUND64(f, g, h, a, b, c, d, e, t + 3, W(t + 3)); \
        ROUND64(e, f, g, h, a, b, c, d, t + 4, W(t + 4)); \
        ROUND64(d, e, f, g, h, a, b, c, t + 5, W(t + 5)); \
        ROUND64(c, d, e, f, g, h, a, b, t + 6, W(t + 6)); \
        ROUND64(b, c, d, e, f, g, h, a, t + 7, W(t + 7)); \
    } while (0)

#define W_LOADED(t) w[t]
#define W_SCHED(t) SCHED64(w, t)

static void sha512_blocks(uint64_t state[8], const uint8_t *data, size_t nblocks)
{
    while (nblocks--) {
        uint64_t w[16];
        uint64_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint64_t e = state[4], f = state[5], g = state[6], h = state[7];
        int t;

        for (t = 0; t < 16; t++)
            w[t] = load_be64(data + 8 * t);

        for (t = 0; t < 16; t += 8)
            EIGHT_ROUNDS64(t, W_LOADED);
        for (t = 16; t < 80; t += 8)
            EIGHT_ROUNDS64(t, W_SCHED);

        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
        data += 128;
    }
}

/* Digest data[0:len] from the initial value iv; write the first out_len
 * bytes (64 for SHA-512, 48 for SHA-384) of the final state to out. */
static void sha512_run(const uint64_t iv[8], const uint8_t *data, size_t len, uint8_t *out,
                       size_t out_len)
{
    uint64_t state[8];
    uint8_t tail[256];
    uint8_t full_out[64];
    size_t full = len / 128;
    int i;

    memcpy(state, iv, sizeof state);
    if (full) /* data may be NULL when len is 0 */
        sha512_blocks(state, data, full);
    sha512_blocks(state, tail, pe__md_tail(data, len, 128, 16, tail));

    for (i = 0; i < 8; i++)
        store_be64(full_out + 8 * i, state[i]);
    memcpy(out, full_out, out_len);
}

void pe__sha512(const uint8_t *data, size_t len, uint8_t out[64])
{
    sha512_run(sha512_iv, data, len, out, 64);
}

void pe__sha384(const uint8_t *data, size_t len, uint8_t out[48])
{
    sha512_run(sha384_iv, data, len, out, 48);
}
