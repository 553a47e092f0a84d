/* Time the C core of pinengine alone, with no Python in the way: the DER walk
 * (pe_der_parse_cert) and SHA-256 (pe_hash) per certificate, one after the
 * other and in the one pass that spki_sha256 runs
 * (pe_der_parse_cert_spki_sha256: the walk in the shadow of SHA-NI rounds).
 *
 * Built and run by benchmarks/c_breakdown.py, which writes the input file:
 * a sequence of (uint32 little-endian length, DER bytes) records. Links the
 * sources in ext/ unchanged. Prints the best (least disturbed) of many short
 * batches, in ns per certificate. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pe_der.h"
#include "pe_hash.h"

#define MAX_CERTS 4096
#define BATCHES 300
#define REPS 20

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const uint8_t *certs[MAX_CERTS];
static size_t lens[MAX_CERTS];
static pe_span spki[MAX_CERTS];
static int nc;
static volatile unsigned sink;

enum { PARSE, HASH_SPKI, HASH_SPKI_PORTABLE, PARSE_AND_HASH, PARSE_SPKI_SHA256, HASH_WHOLE, NTESTS };
static const char *names[NTESTS] = {
    "parse (pe_der_parse_cert)",
    "sha256(spki), dispatched",
    "sha256(spki), portable C",
    "parse + sha256(spki)",
    "pe_der_parse_cert_spki_sha256",
    "sha256(whole certificate)",
};

static void one_batch(int test)
{
    pe_cert c;
    size_t off;
    uint8_t out[64];
    int r, i;
    for (r = 0; r < REPS; r++) {
        for (i = 0; i < nc; i++) {
            switch (test) {
            case PARSE:
                sink += (unsigned)pe_der_parse_cert(certs[i], lens[i], &c, &off);
                sink += (unsigned)c.spki_tlv.len;
                break;
            case HASH_SPKI:
                pe_hash(PE_SHA256, certs[i] + spki[i].off, spki[i].len, out);
                sink += out[0];
                break;
            case HASH_SPKI_PORTABLE:
                pe_sha256_with("portable", certs[i] + spki[i].off, spki[i].len, out);
                sink += out[0];
                break;
            case PARSE_AND_HASH:
                pe_der_parse_cert(certs[i], lens[i], &c, &off);
                pe_hash(PE_SHA256, certs[i] + c.spki_tlv.off, c.spki_tlv.len, out);
                sink += out[0];
                break;
            case PARSE_SPKI_SHA256:
                pe_der_parse_cert_spki_sha256(certs[i], lens[i], &c, out, &off);
                sink += out[0];
                break;
            case HASH_WHOLE:
                pe_hash(PE_SHA256, certs[i], lens[i], out);
                sink += out[0];
                break;
            }
        }
    }
}

int main(int argc, char **argv)
{
    static uint8_t buf[1 << 22];
    double best[NTESTS], t, d;
    size_t n, p = 0, total = 0, spki_total = 0;
    int k, test, i;
    FILE *f;

    if (argc != 2) {
        fprintf(stderr, "usage: %s certs.bin\n", argv[0]);
        return 2;
    }
    f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    while (p + 4 <= n && nc < MAX_CERTS) {
        uint32_t l;
        memcpy(&l, buf + p, 4);
        p += 4;
        certs[nc] = buf + p;
        lens[nc] = l;
        p += l;
        nc++;
    }
    pe_hash_init(0);
    for (i = 0; i < nc; i++) {
        pe_cert c;
        size_t off;
        if (pe_der_parse_cert(certs[i], lens[i], &c, &off) != PE_DER_OK) {
            fprintf(stderr, "certificate %d does not parse\n", i);
            return 1;
        }
        spki[i] = c.spki_tlv;
        total += lens[i];
        spki_total += c.spki_tlv.len;
    }
    printf("%d certificates, mean %.0f bytes, mean SPKI %.0f bytes; SHA-256 implementation: %s\n", nc,
           (double)total / nc, (double)spki_total / nc, pe_sha256_active());

    for (test = 0; test < NTESTS; test++)
        best[test] = 1e30;
    /* Interleave the tests so a change of machine load hits them all alike. */
    for (k = 0; k < BATCHES; k++) {
        for (test = 0; test < NTESTS; test++) {
            t = now();
            one_batch(test);
            d = now() - t;
            if (d < best[test])
                best[test] = d;
        }
    }
    for (test = 0; test < NTESTS; test++)
        printf("  %-28s %8.0f ns/cert\n", names[test], best[test] * 1e9 / ((double)REPS * nc));

    /* pe_sha256_with() and pe_sha256_available() probe the CPU (CPUID) on
     * every call; under a hypervisor each CPUID is a VM exit. */
    t = now();
    for (k = 0; k < 2000; k++)
        sink += (unsigned)pe_sha256_available("sha-ni");
    printf("  %-28s %8.0f ns/call\n", "pe_sha256_available(sha-ni)", (now() - t) / 2000 * 1e9);
    t = now();
    for (k = 0; k < 2000; k++)
        sink += (unsigned)pe_sha256_available("portable");
    printf("  %-28s %8.0f ns/call\n", "pe_sha256_available(portable)", (now() - t) / 2000 * 1e9);
    return 0;
}
