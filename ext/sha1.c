/* SHA-1 (FIPS 180-4), portable C. Kept for legacy pins only; whether a SHA-1
 * pin is acceptable is decided above the core. */
#define PE_HASH_INTERNAL
#include "pe_hash.h"

#include <string.h>

#define ROTL32(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void sha1_blocks(uint32_t state[5], const uint8_t *data, size_t nblocks)
{
    while (nblocks--) {
        /* 16-word ring: W[t] needs W[t-3], W[t-8], W[t-14] and W[t-16]. */
        uint32_t w[16];
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];
        int t;

        for (t = 0; t < 16; t++)
            w[t] = load_be32(data + 4 * t);

        for (t = 0; t < 80; t++) {
            uint32_t wt, f, k, tmp;
            if (t < 16) {
                wt = w[t];
            } else {
                wt = w[(t - 3) & 15] ^ w[(t - 8) & 15] ^ w[(t - 14) & 15] ^ w[t & 15];
                wt = w[t & 15] = ROTL32(wt, 1);
            }
            if (t < 20) {
                f = (b & c) | (~b & d);
                k = 0x5a827999;
            } else if (t < 40) {
                f = b ^ c ^ d;
                k = 0x6ed9eba1;
            } else if (t < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8f1bbcdc;
            } else {
                f = b ^ c ^ d;
                k = 0xca62c1d6;
            }
            tmp = ROTL32(a, 5) + f + e + k + wt;
            e = d;
            d = c;
            c = ROTL32(b, 30);
            b = a;
            a = tmp;
        }

        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        data += 64;
    }
}

void pe__sha1(const uint8_t *data, size_t len, uint8_t out[20])
{
    uint32_t state[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    uint8_t tail[128];
    size_t full = len / 64;
    int i;

    if (full) /* data may be NULL when len is 0 */
        sha1_blocks(state, data, full);
    sha1_blocks(state, tail, pe__md_tail(data, len, 64, 8, tail));

    for (i = 0; i < 5; i++) {
        out[4 * i + 0] = (uint8_t)(state[i] >> 24);
        out[4 * i + 1] = (uint8_t)(state[i] >> 16);
        out[4 * i + 2] = (uint8_t)(state[i] >> 8);
        out[4 * i + 3] = (uint8_t)state[i];
    }
}
