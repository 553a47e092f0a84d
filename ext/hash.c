/* One entry point for every digest the core supports. */
#define PE_HASH_INTERNAL
#include "pe_hash.h"

size_t pe_hash_len(int alg)
{
    switch (alg) {
    case PE_SHA1:
        return 20;
    case PE_SHA256:
        return 32;
    case PE_SHA384:
        return 48;
    case PE_SHA512:
        return 64;
    default:
        return 0;
    }
}

int pe_hash(int alg, const uint8_t *data, size_t len, uint8_t *out)
{
    switch (alg) {
    case PE_SHA1:
        pe__sha1(data, len, out);
        return 0;
    case PE_SHA256:
        pe__sha256(data, len, out);
        return 0;
    case PE_SHA384:
        pe__sha384(data, len, out);
        return 0;
    case PE_SHA512:
        pe__sha512(data, len, out);
        return 0;
    default:
        return -1;
    }
}
