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

#endif
