/* pinengine: the plain-C core (the C files of ext/) driven from stdin, without Python.
 *
 * Built for the host and cross-compiled for aarch64 and armv7 by
 * tests/native/cross.py, which runs the builds (under qemu user mode for the
 * foreign ones) on the same input and compares their answers with hashlib,
 * with each other and with the compiled Python core.
 *
 * Input (stdin, binary): records, each a type byte, a payload length as
 * 4 bytes big-endian, then the payload:
 *   'H' message   -> SHA-1/256/384/512 through pe_hash(), and SHA-256 through
 *                    every implementation pe_sha256_available() says can run
 *   'G' u32 length (big-endian), a mask byte, pattern bytes
 *                 -> the same for the message of that length made by repeating
 *                    the pattern (large messages without piping them through),
 *                    only the digests the mask asks for: 1 SHA-1, 2 SHA-256,
 *                    4 SHA-384, 8 SHA-512, 16 SHA-256 by every implementation
 *   'C' would-be certificate
 *                 -> pe_der_parse_cert_spki_sha256() and pe_der_parse_cert()
 *                    (+ pe_hash(PE_SHA256) over the SPKI span it reports)
 *   'S' would-be SubjectPublicKeyInfo -> pe_der_validate_spki()
 *
 * Output (stdout, text): a header, then exactly one line per record, in
 * order, then "end <records>":
 *   info size_t=<bits> pointer=<bits> arch=<name> hwcap_sha2_masked=<0|1>
 *   impl <name> <0|1>            for "portable", "armv8", "sha-ni", "none"
 *   active <name>                pe_sha256_active() after pe_hash_init(0)
 *   error <code> <message>       pe_der_strerror() for every code
 *   H <len> sha1=<hex> sha256=<hex> sha384=<hex> sha512=<hex> sha256/<impl>=<hex>...
 *                                (a 'G' record: only the digests its mask asks for)
 *   C <result of the fused call> | <result of pe_der_parse_cert>
 *        a result: "ok <spki sha256 hex> v=<version> tbs=<off>+<len> serial=..
 *                   issuer=.. not_before=.. not_after=.. subject=.. spki=.."
 *               or "err <code> <offset>"
 *   S ok | S err <code> <offset>
 *
 * Every payload is placed so that it ends exactly at a page the process may
 * not read (PROT_NONE): a read past the end of an input faults, on every
 * architecture and under qemu too, where no sanitizer runs.
 *
 * Built with -DCROSS_MASK_HWCAP_SHA2 and -Wl,--wrap=getauxval, the process
 * sees AT_HWCAP without the SHA-2 bit (what the kernel reports on an AArch64
 * CPU without the cryptography extension, e.g. a Cortex-A53 or A72 as in the
 * Raspberry Pi 3 and 4): qemu 7.2 has no CPU model and no property without
 * SHA-2, so this is how the fallback of the run-time dispatch is exercised. */
#define _GNU_SOURCE 1

#include "pe_der.h"
#include "pe_hash.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef CROSS_MASK_HWCAP_SHA2
#  include <sys/auxv.h>
unsigned long __real_getauxval(unsigned long type);
unsigned long __wrap_getauxval(unsigned long type);
unsigned long __wrap_getauxval(unsigned long type)
{
    unsigned long value = __real_getauxval(type);
    return type == AT_HWCAP ? value & ~(1UL << 6) /* HWCAP_SHA2 on arm64 */ : value;
}
#  define HWCAP_MASKED 1
#else
#  define HWCAP_MASKED 0
#endif

#if defined(__x86_64__)
#  define ARCH "x86_64"
#elif defined(__aarch64__)
#  define ARCH "aarch64"
#elif defined(__arm__)
#  define ARCH "arm"
#elif defined(__i386__)
#  define ARCH "i386"
#else
#  define ARCH "other"
#endif

static const char *const impl_names[] = {"portable", "armv8", "sha-ni", "none"};
#define N_IMPL_NAMES (sizeof impl_names / sizeof impl_names[0])

static void die(const char *what)
{
    fflush(stdout);
    fprintf(stderr, "core_vectors: %s\n", what);
    exit(2);
}

/* ---- input buffers that end at an unreadable page ------------------------ */

static uint8_t *region = NULL; /* readable part, then one PROT_NONE page */
static size_t region_size = 0; /* size of the readable part */
static size_t page_size = 0;

/* A buffer of n bytes whose last byte is followed by the guard page. */
static uint8_t *guarded(size_t n)
{
    if (region == NULL || n > region_size) {
        size_t want = (n + page_size - 1) / page_size * page_size;
        void *p;
        if (region != NULL)
            munmap(region, region_size + page_size);
        if (want < 16 * page_size)
            want = 16 * page_size;
        p = mmap(NULL, want + page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            die("mmap failed");
        region = p;
        region_size = want;
        if (mprotect(region + region_size, page_size, PROT_NONE) != 0)
            die("mprotect failed");
    }
    return region + (region_size - n);
}

static void read_exact(uint8_t *dst, size_t n)
{
    if (n && fread(dst, 1, n, stdin) != n)
        die("truncated input record");
}

/* ---- output ------------------------------------------------------------ */

static void put_hex(const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        putchar(digits[p[i] >> 4]);
        putchar(digits[p[i] & 15]);
    }
}

static void put_span(const char *name, pe_span s)
{
    printf(" %s=%lu+%lu", name, (unsigned long)s.off, (unsigned long)s.len);
}

static void put_cert_result(int rc, size_t err_off, const pe_cert *c, const uint8_t digest[32])
{
    if (rc != PE_DER_OK) {
        printf("err %d %lu", rc, (unsigned long)err_off);
        return;
    }
    printf("ok ");
    put_hex(digest, 32);
    printf(" v=%d", c->version);
    put_span("tbs", c->tbs_tlv);
    put_span("serial", c->serial);
    put_span("issuer", c->issuer_tlv);
    put_span("not_before", c->not_before_tlv);
    put_span("not_after", c->not_after_tlv);
    put_span("subject", c->subject_tlv);
    put_span("spki", c->spki_tlv);
}

/* ---- records ----------------------------------------------------------- */

#define ALL_DIGESTS 31

static void do_hashes(const uint8_t *msg, size_t len, unsigned mask)
{
    static const struct {
        int alg;
        const char *name;
    } algs[] = {{PE_SHA1, "sha1"}, {PE_SHA256, "sha256"}, {PE_SHA384, "sha384"}, {PE_SHA512, "sha512"}};
    uint8_t out[PE_MAX_DIGEST];
    size_t i;

    printf("H %lu", (unsigned long)len);
    for (i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        if (!(mask & (1u << i)))
            continue;
        memset(out, 0xa5, sizeof out);
        if (pe_hash(algs[i].alg, msg, len, out) != 0)
            die("pe_hash refused a known algorithm");
        printf(" %s=", algs[i].name);
        put_hex(out, pe_hash_len(algs[i].alg));
    }
    for (i = 0; i < N_IMPL_NAMES && (mask & 16); i++) {
        int rc;
        memset(out, 0xa5, sizeof out);
        rc = pe_sha256_with(impl_names[i], msg, len, out);
        if (rc != 0 && pe_sha256_available(impl_names[i]))
            die("pe_sha256_with failed for an available implementation");
        if (rc == 0) {
            printf(" sha256/%s=", impl_names[i]);
            put_hex(out, 32);
        }
    }
    putchar('\n');
}

static void do_cert(const uint8_t *buf, size_t len)
{
    pe_cert fused, plain;
    uint8_t fused_digest[32], plain_digest[32];
    size_t fused_off = 0, plain_off = 0;
    int fused_rc, plain_rc;

    memset(&fused, 0, sizeof fused);
    memset(&plain, 0, sizeof plain);
    memset(fused_digest, 0, sizeof fused_digest);
    memset(plain_digest, 0, sizeof plain_digest);
    fused_rc = pe_der_parse_cert_spki_sha256(buf, len, &fused, fused_digest, &fused_off);
    plain_rc = pe_der_parse_cert(buf, len, &plain, &plain_off);
    if (plain_rc == PE_DER_OK) {
        /* a span outside the input would fault on the guard page or before */
        if (plain.spki_tlv.off > len || plain.spki_tlv.len > len - plain.spki_tlv.off)
            die("pe_der_parse_cert reported an SPKI span outside the input");
        pe_hash(PE_SHA256, buf + plain.spki_tlv.off, plain.spki_tlv.len, plain_digest);
    }
    printf("C ");
    put_cert_result(fused_rc, fused_off, &fused, fused_digest);
    printf(" | ");
    put_cert_result(plain_rc, plain_off, &plain, plain_digest);
    putchar('\n');
}

static void do_spki(const uint8_t *buf, size_t len)
{
    size_t off = 0;
    int rc = pe_der_validate_spki(buf, len, &off);
    if (rc == PE_DER_OK)
        printf("S ok\n");
    else
        printf("S err %d %lu\n", rc, (unsigned long)off);
}

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

int main(void)
{
    unsigned long records = 0;
    size_t i;
    int code;

    /* a line at a time: if an input crashes the driver, the lines before it are out */
    setvbuf(stdout, NULL, _IOLBF, 1 << 16);
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    pe_hash_init(0);

    printf("info size_t=%u pointer=%u arch=%s hwcap_sha2_masked=%d\n", (unsigned)(8 * sizeof(size_t)),
           (unsigned)(8 * sizeof(void *)), ARCH, HWCAP_MASKED);
    for (i = 0; i < N_IMPL_NAMES; i++)
        printf("impl %s %d\n", impl_names[i], pe_sha256_available(impl_names[i]));
    printf("active %s\n", pe_sha256_active());
    for (code = 0; code < PE_DER_ERR__COUNT; code++)
        printf("error %d %s\n", code, pe_der_strerror(code));

    for (;;) {
        uint8_t head[4];
        size_t n;
        uint8_t *buf;
        int type = getchar();
        if (type == EOF)
            break;
        read_exact(head, 4);
        n = be32(head);
        if (type == 'G') {
            uint8_t meta[5];
            size_t total, plen, pos;
            uint8_t *pattern;
            if (n < 6)
                die("bad G record");
            read_exact(meta, 5);
            total = be32(meta);
            plen = n - 5;
            pattern = malloc(plen);
            if (pattern == NULL)
                die("out of memory");
            read_exact(pattern, plen);
            buf = guarded(total);
            for (pos = 0; pos < total; pos += plen)
                memcpy(buf + pos, pattern, total - pos < plen ? total - pos : plen);
            free(pattern);
            do_hashes(buf, total, meta[4]);
        } else {
            buf = guarded(n);
            read_exact(buf, n);
            if (type == 'H')
                do_hashes(buf, n, ALL_DIGESTS);
            else if (type == 'C')
                do_cert(buf, n);
            else if (type == 'S')
                do_spki(buf, n);
            else
                die("unknown record type");
        }
        records++;
    }
    printf("end %lu\n", records);
    if (fflush(stdout) != 0 || ferror(stdout))
        die("write error");
    return 0;
}
