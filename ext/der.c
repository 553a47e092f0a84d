/* pinengine: strict DER / X.509 walker. The rules are ext/CORE_SPEC.md
 * section 1, to the letter: the pure-Python twin applies the same ones and a
 * differential test holds both to the same decision for every input.
 *
 * Every TLV of the input is read exactly once, and nothing recurses.
 * check_shape() checks the X.509 shape (section 1.2) top-down; every TLV
 * header it reads goes through the full section 1.1 checks (get_tlv). The
 * subtrees whose inside section 1.2 does not constrain (issuer and subject
 * Names, algorithm parameters, the extensions list) get section 1.1 from an
 * iterative walker (walk_step) with a fixed stack of PE_DER_MAX_DEPTH ends:
 *   - pe_der_parse_cert() walks each one as soon as its header is read;
 *   - pe_der_parse_cert_spki_sha256() queues them (at most 6) and walks them
 *     while it hashes the SPKI, whose place the shape check found: with
 *     SHA-NI, one walk step after every four rounds, so that the walk runs
 *     in the shadow of the rounds (a chain of dependent instructions that
 *     leaves the integer units idle).
 *
 * Every input is accepted or refused exactly as a two-pass walk (first
 * section 1.1 over everything, then section 1.2) would decide: a certificate
 * is accepted only when each of its TLVs passed section 1.1 (each one is
 * read, by the shape checks or by the walker) and the shape checks passed.
 * When an input breaks several rules, every entry point names the one
 * pe_der_parse_cert() meets first (see pe_der.h); CORE_SPEC compares
 * decisions only.
 *
 * Invariant for all offset arithmetic: positions are always <= the end of
 * the enclosing element, which is <= len; a TLV is only accepted after
 * checking hdr + contents <= end - pos, so pos + hdr + contents never
 * overflows. */
#include "pe_der.h"

#define PE_HASH_INTERNAL
#define PE_SHANI_ENGINE
#include "pe_hash.h" /* also PE_ALWAYS_INLINE */

#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#  define PE_LIKELY(x) __builtin_expect(!!(x), 1)
#  define PE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#  define PE_NOINLINE static __attribute__((noinline, cold))
#elif defined(_MSC_VER)
#  define PE_LIKELY(x) (x)
#  define PE_UNLIKELY(x) (x)
#  define PE_NOINLINE static __declspec(noinline)
#else
#  define PE_LIKELY(x) (x)
#  define PE_UNLIKELY(x) (x)
#  define PE_NOINLINE static
#endif

typedef struct {
    unsigned tag;
    size_t off;   /* offset of the tag byte */
    size_t start; /* offset of the contents */
    size_t end;   /* offset just past the contents */
} tlv_t;

static const char *const messages[PE_DER_ERR__COUNT] = {
    [PE_DER_OK] = "ok",
    [PE_DER_ERR_EMPTY] = "empty input",
    [PE_DER_ERR_TRUNCATED] = "truncated TLV header",
    [PE_DER_ERR_HIGH_TAG] = "high-tag-number form",
    [PE_DER_ERR_INDEFINITE] = "indefinite length",
    [PE_DER_ERR_LENGTH_SIZE] = "length of more than 4 bytes",
    [PE_DER_ERR_NONMINIMAL] = "non-minimal length",
    [PE_DER_ERR_OVERRUN] = "length exceeds enclosing element",
    [PE_DER_ERR_DEPTH] = "nesting deeper than 32",
    [PE_DER_ERR_TRAILING] = "trailing bytes after certificate",
    [PE_DER_ERR_TRAILING_SPKI] = "trailing bytes after subjectPublicKeyInfo",
    [PE_DER_ERR_CERT_SEQ] = "expected SEQUENCE for Certificate",
    [PE_DER_ERR_CERT_COUNT] = "Certificate must have exactly 3 elements",
    [PE_DER_ERR_TBS_SEQ] = "expected SEQUENCE for tbsCertificate",
    [PE_DER_ERR_VERSION] = "version must hold exactly one INTEGER",
    [PE_DER_ERR_VERSION_VALUE] = "bad version value",
    [PE_DER_ERR_SERIAL] = "expected INTEGER for serialNumber",
    [PE_DER_ERR_SERIAL_EMPTY] = "empty serialNumber",
    [PE_DER_ERR_ALGID_SEQ] = "expected SEQUENCE for AlgorithmIdentifier",
    [PE_DER_ERR_ALGID_OID] = "expected OBJECT IDENTIFIER in AlgorithmIdentifier",
    [PE_DER_ERR_OID_EMPTY] = "empty OBJECT IDENTIFIER",
    [PE_DER_ERR_ALGID_EXTRA] = "extra elements in AlgorithmIdentifier",
    [PE_DER_ERR_ISSUER_SEQ] = "expected SEQUENCE for issuer",
    [PE_DER_ERR_VALIDITY_SEQ] = "expected SEQUENCE for validity",
    [PE_DER_ERR_VALIDITY_COUNT] = "validity must have exactly 2 elements",
    [PE_DER_ERR_TIME_TAG] = "expected UTCTime or GeneralizedTime",
    [PE_DER_ERR_UTCTIME] = "bad UTCTime",
    [PE_DER_ERR_GENTIME] = "bad GeneralizedTime",
    [PE_DER_ERR_SUBJECT_SEQ] = "expected SEQUENCE for subject",
    [PE_DER_ERR_SPKI_SEQ] = "expected SEQUENCE for subjectPublicKeyInfo",
    [PE_DER_ERR_SPKI_BITSTRING] = "expected BIT STRING for subjectPublicKey",
    [PE_DER_ERR_SPKI_EXTRA] = "extra elements in subjectPublicKeyInfo",
    [PE_DER_ERR_BITSTRING] = "bad BIT STRING",
    [PE_DER_ERR_UID_VERSION] = "unique identifier requires version 2 or 3",
    [PE_DER_ERR_EXT_VERSION] = "extensions require version 3",
    [PE_DER_ERR_EXTENSIONS] = "extensions must hold exactly one non-empty SEQUENCE",
    [PE_DER_ERR_TBS_EXTRA] = "unexpected element in tbsCertificate",
    [PE_DER_ERR_SIGVALUE] = "expected BIT STRING for signatureValue",
};

const char *pe_der_strerror(int code)
{
    if (code < 0 || code >= PE_DER_ERR__COUNT || messages[code] == NULL)
        return "unknown error";
    return messages[code];
}

/* ---- section 1.1: one TLV header ---------------------------------------- */

/* The complete section 1.1 check of the TLV header at buf[pos], inside an
 * element ending at end (pos <= end); the contents must fit. This is the
 * reference reading of a header; the fast paths below (get_tlv, walk_step)
 * only take the short form and the minimal 0x81 / 0x82 forms themselves
 * and leave everything else to this function, which therefore decides every
 * unusual header, and every error.
 *
 * Tag problems are reported at the tag byte, length problems at the first
 * length byte (pos + 1), as the pure-Python twin does. */
PE_NOINLINE int read_tlv_slow(const uint8_t *buf, size_t pos, size_t end, tlv_t *t, size_t *err_off)
{
    size_t avail, hdr, clen;
    uint8_t tag, first;

    *err_off = pos;
    if (pos >= end)
        return PE_DER_ERR_TRUNCATED;
    avail = end - pos;
    tag = buf[pos];
    if ((tag & 0x1f) == 0x1f)
        return PE_DER_ERR_HIGH_TAG;
    if (avail < 2)
        return PE_DER_ERR_TRUNCATED;
    *err_off = pos + 1;
    first = buf[pos + 1];
    if (first < 0x80) {
        hdr = 2;
        clen = first;
    } else if (first == 0x80) {
        return PE_DER_ERR_INDEFINITE;
    } else if (first > 0x84) {
        return PE_DER_ERR_LENGTH_SIZE;
    } else {
        size_t n = (size_t)(first & 0x7f), i;
        uint32_t v = 0;
        if (avail - 2 < n)
            return PE_DER_ERR_TRUNCATED;
        if (buf[pos + 2] == 0)
            return PE_DER_ERR_NONMINIMAL;
        for (i = 0; i < n; i++)
            v = (v << 8) | buf[pos + 2 + i];
        if (n == 1 && v < 0x80)
            return PE_DER_ERR_NONMINIMAL;
        hdr = 2 + n;
        /* size_t holds any 32-bit value on every platform Python runs on */
        clen = (size_t)v;
    }
    if (clen > avail - hdr)
        return PE_DER_ERR_OVERRUN;
    t->tag = tag;
    t->off = pos;
    t->start = pos + hdr;
    t->end = pos + hdr + clen;
    return PE_DER_OK;
}

/* The fast path of a header, shared by get_tlv and walk_step: the TLV at
 * buf[pos], inside an element ending at end (pos < end). Returns 1 and sets
 * *start (its contents) and *next (just past them) when the header is in a
 * form decided here: tag not in the high-tag-number form, and the short
 * length form or a minimal 0x81 / 0x82 long form, with contents that fit.
 * Returns 0 for anything else, which read_tlv_slow() then decides (it may
 * still accept it: 0x83 / 0x84 forms). */
PE_ALWAYS_INLINE int fast_header(const uint8_t *buf, size_t pos, size_t end, size_t *start, size_t *next)
{
    unsigned first;
    size_t s, n;
    /* (tag + 1) & 0x1f is 0 exactly when the low five bits of tag are all set */
    if (PE_UNLIKELY(((buf[pos] + 1u) & 0x1f) == 0 || end - pos < 2))
        return 0;
    first = buf[pos + 1];
    if (PE_LIKELY(first < 0x80)) {
        s = pos + 2;
        n = s + first;
    } else if (first == 0x81 && end - pos >= 3 && buf[pos + 2] >= 0x80) {
        s = pos + 3;
        n = s + buf[pos + 2];
    } else if (first == 0x82 && end - pos >= 4 && buf[pos + 2] != 0) {
        s = pos + 4;
        n = s + (((size_t)buf[pos + 2] << 8) | buf[pos + 3]);
    } else {
        return 0;
    }
    /* n <= pos + 4 + 0xffff: no overflow, pos being an offset into buf */
    if (PE_UNLIKELY(n > end))
        return 0;
    *start = s;
    *next = n;
    return 1;
}

/* Read the TLV at buf[pos] (pos < end) with every section 1.1 check. */
PE_ALWAYS_INLINE int get_tlv(const uint8_t *buf, size_t pos, size_t end, tlv_t *t, size_t *err_off)
{
    size_t start, next;
    if (PE_LIKELY(fast_header(buf, pos, end, &start, &next))) {
        t->tag = buf[pos];
        t->off = pos;
        t->start = start;
        t->end = next;
        return PE_DER_OK;
    } else {
        /* A copy, so that t's address never escapes: once inlined, the
         * caller's TLVs can live in registers. */
        tlv_t slow;
        int rc = read_tlv_slow(buf, pos, end, &slow, err_off);
        if (rc == PE_DER_OK)
            *t = slow;
        return rc;
    }
}

/* ---- section 1.1: whole subtrees --------------------------------------- */

/* walk_step(): the walk is over (not an error; error codes are > 0). */
#define PE_WALK_DONE (-1)

/* One step of a section 1.1 walk: the TLV at *pos, inside the element that
 * ends at *end (*pos < *end). ends[0 .. *top - ends) holds the ends of the
 * constructed TLVs open around it, so its depth is that of the walk's first
 * level plus *top - ends. A constructed TLV with contents is entered (its
 * end pushed) only while its children's depth stays at most
 * PE_DER_MAX_DEPTH, i.e. while *top < limit, where limit = ends +
 * PE_DER_MAX_DEPTH - (depth of the first level); deeper: refused at the
 * first child. After a TLV that is not entered, the elements it completes
 * are closed: containment is exact (a child's end never passes its
 * parent's; the header checks ensure it), so *pos reaches each enclosing end
 * exactly. Returns PE_DER_OK, PE_WALK_DONE when that TLV was the last one
 * (then *pos == *end and *top == ends), or an error code with *err_off. */
PE_ALWAYS_INLINE int walk_step(const uint8_t *buf, size_t *pos_io, size_t *end_io, size_t *ends, size_t **top_io,
                               const size_t *limit, size_t *err_off)
{
    size_t pos = *pos_io, end = *end_io, start, next;
    size_t *top = *top_io;
    if (PE_UNLIKELY(!fast_header(buf, pos, end, &start, &next))) {
        tlv_t t;
        int rc = read_tlv_slow(buf, pos, end, &t, err_off);
        if (rc != PE_DER_OK)
            return rc;
        start = t.start;
        next = t.end;
    }
    if ((buf[pos] & 0x20) && next != start) {
        /* constructed, not empty: walk into it */
        if (PE_UNLIKELY(top == limit)) {
            *err_off = start;
            return PE_DER_ERR_DEPTH;
        }
        *top++ = end;
        *pos_io = start;
        *end_io = next;
        *top_io = top;
        return PE_DER_OK;
    }
    /* close the elements this TLV completes */
    pos = next;
    while (pos == end) {
        if (top == ends) {
            *pos_io = pos;
            *top_io = top;
            return PE_WALK_DONE;
        }
        end = *--top;
    }
    *pos_io = pos;
    *end_io = end;
    *top_io = top;
    return PE_DER_OK;
}

/* The subtrees check_shape() leaves to walk_step: contents of constructed
 * TLVs, not empty. The X.509 shape queues at most 6 (two Names, three
 * algorithm parameters, the extensions). */
#define PE_QUEUE_MAX 8

typedef struct {
    size_t start, end; /* contents of a constructed TLV, start < end */
    int depth;         /* the depth of the TLVs in them */
} pe_subtree;

typedef struct {
    pe_subtree t[PE_QUEUE_MAX];
    int n;
} pe_queue;

/* Section 1.1 for buf[start:end] (start < end), TLVs at depth `depth`. */
static int walk_subtree(const uint8_t *buf, size_t start, size_t end, int depth, size_t *err_off)
{
    size_t ends[PE_DER_MAX_DEPTH];
    size_t *top = ends;
    if (PE_UNLIKELY(depth < 1 || depth > PE_DER_MAX_DEPTH)) {
        *err_off = start;
        return PE_DER_ERR_DEPTH;
    }
    for (;;) {
        int rc = walk_step(buf, &start, &end, ends, &top, ends + (PE_DER_MAX_DEPTH - depth), err_off);
        if (PE_UNLIKELY(rc != PE_DER_OK))
            return rc == PE_WALK_DONE ? PE_DER_OK : rc;
    }
}

/* Section 1.1 for every queued subtree, in order. */
static int walk_queue(const uint8_t *buf, const pe_queue *q, size_t *err_off)
{
    int i;
    for (i = 0; i < q->n; i++) {
        int rc = walk_subtree(buf, q->t[i].start, q->t[i].end, q->t[i].depth, err_off);
        if (PE_UNLIKELY(rc != PE_DER_OK))
            return rc;
    }
    return PE_DER_OK;
}

/* The contents of t, if it is constructed and not empty, at depth
 * child_depth: walked at once when q is NULL, else queued (or walked at once
 * if the queue were full). */
PE_ALWAYS_INLINE int queue_inside(pe_queue *q, const uint8_t *buf, const tlv_t *t, int child_depth, size_t *err_off)
{
    if (!(t->tag & 0x20) || t->end == t->start)
        return PE_DER_OK;
    if (q == NULL || PE_UNLIKELY(q->n == PE_QUEUE_MAX))
        return walk_subtree(buf, t->start, t->end, child_depth, err_off);
    q->t[q->n].start = t->start;
    q->t[q->n].end = t->end;
    q->t[q->n].depth = child_depth;
    q->n++;
    return PE_DER_OK;
}

/* ---- section 1.2 --------------------------------------------------------- */

/* Read the next element of a constructed TLV's contents, advancing *pos.
 * A missing element (pos at end) gives `missing_code` at `missing_off`. */
PE_ALWAYS_INLINE int next_elem(const uint8_t *buf, size_t *pos, size_t end, tlv_t *t, int missing_code,
                               size_t missing_off, size_t *err_off)
{
    int rc;
    if (PE_UNLIKELY(*pos >= end)) {
        *err_off = missing_off;
        return missing_code;
    }
    rc = get_tlv(buf, *pos, end, t, err_off);
    if (PE_UNLIKELY(rc != PE_DER_OK))
        return rc;
    *pos = t->end;
    return PE_DER_OK;
}

#define TRY(expr)                           \
    do {                                    \
        int rc_ = (expr);                   \
        if (PE_UNLIKELY(rc_ != PE_DER_OK))  \
            return rc_;                     \
    } while (0)

#define FAIL(code, off)     \
    do {                    \
        *err_off = (off);   \
        return (code);      \
    } while (0)

PE_ALWAYS_INLINE int check_bitstring(const uint8_t *buf, const tlv_t *t, size_t *err_off)
{
    size_t n = t->end - t->start;
    if (PE_UNLIKELY(n < 1 || buf[t->start] > 7 || (n == 1 && buf[t->start] != 0)))
        FAIL(PE_DER_ERR_BITSTRING, t->off);
    return PE_DER_OK;
}

/* AlgorithmIdentifier at depth `depth`: SEQUENCE { OBJECT IDENTIFIER (>= 1
 * byte), at most one more TLV (any tag; walked if constructed) }. */
PE_ALWAYS_INLINE int check_algid(pe_queue *q, const uint8_t *buf, const tlv_t *t, int depth, size_t *err_off)
{
    size_t pos = t->start;
    tlv_t oid, param;
    if (PE_UNLIKELY(t->tag != 0x30))
        FAIL(PE_DER_ERR_ALGID_SEQ, t->off);
    TRY(next_elem(buf, &pos, t->end, &oid, PE_DER_ERR_ALGID_OID, pos, err_off));
    if (PE_UNLIKELY(oid.tag != 0x06))
        FAIL(PE_DER_ERR_ALGID_OID, oid.off);
    if (PE_UNLIKELY(oid.end == oid.start))
        FAIL(PE_DER_ERR_OID_EMPTY, oid.off);
    if (pos < t->end) {
        TRY(get_tlv(buf, pos, t->end, &param, err_off));
        pos = param.end;
        if (PE_UNLIKELY(pos < t->end))
            FAIL(PE_DER_ERR_ALGID_EXTRA, pos);
        TRY(queue_inside(q, buf, &param, depth + 2, err_off));
    }
    return PE_DER_OK;
}

/* SubjectPublicKeyInfo at depth `depth`: SEQUENCE { AlgorithmIdentifier,
 * BIT STRING } exactly. */
PE_ALWAYS_INLINE int check_spki(pe_queue *q, const uint8_t *buf, const tlv_t *t, int depth, size_t *err_off)
{
    size_t pos = t->start;
    tlv_t alg, key;
    if (PE_UNLIKELY(t->tag != 0x30))
        FAIL(PE_DER_ERR_SPKI_SEQ, t->off);
    TRY(next_elem(buf, &pos, t->end, &alg, PE_DER_ERR_ALGID_SEQ, pos, err_off));
    TRY(check_algid(q, buf, &alg, depth + 1, err_off));
    TRY(next_elem(buf, &pos, t->end, &key, PE_DER_ERR_SPKI_BITSTRING, pos, err_off));
    if (PE_UNLIKELY(key.tag != 0x03))
        FAIL(PE_DER_ERR_SPKI_BITSTRING, key.off);
    TRY(check_bitstring(buf, &key, err_off));
    if (PE_UNLIKELY(pos < t->end))
        FAIL(PE_DER_ERR_SPKI_EXTRA, pos);
    return PE_DER_OK;
}

/* Eight bytes from p (any alignment), in memory order. */
PE_ALWAYS_INLINE uint64_t load8(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* 1 when all eight bytes of v are ASCII digits: each byte's high nibble is
 * 3 both before and after adding 6 (0x30..0x39 -> 0x36..0x3f; 0x3a..0x3f
 * carry into the high nibble). No carry crosses a byte whose high nibble
 * is 3, and the result does not depend on the byte order. */
PE_ALWAYS_INLINE int all_digits8(uint64_t v)
{
    const uint64_t hi = 0xF0F0F0F0F0F0F0F0u, threes = 0x3030303030303030u, sixes = 0x0606060606060606u;
    return ((v & hi) == threes) & (((v + sixes) & hi) == threes);
}

/* The number written by two ASCII digits at p (already checked). */
PE_ALWAYS_INLINE int two_digits(const uint8_t *p)
{
    return (p[0] - '0') * 10 + (p[1] - '0');
}

/* Time: UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ, a real
 * Gregorian date and time of day. */
PE_ALWAYS_INLINE int check_time(const uint8_t *buf, const tlv_t *t, size_t *err_off)
{
    static const uint8_t dim[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const uint8_t *p = buf + t->start;
    size_t n = t->end - t->start;
    int year, month, day, hour, minute, second, code, leap;

    if (t->tag == 0x17) {
        code = PE_DER_ERR_UTCTIME;
        /* 12 digits in p[0..12) (two overlapping loads) and 'Z' */
        if (PE_UNLIKELY(n != 13 || !(all_digits8(load8(p)) & all_digits8(load8(p + 4)))))
            FAIL(code, t->off);
        year = two_digits(p);
        year += year >= 50 ? 1900 : 2000;
        p += 2;
    } else if (t->tag == 0x18) {
        code = PE_DER_ERR_GENTIME;
        /* 14 digits in p[0..14) and 'Z' */
        if (PE_UNLIKELY(n != 15 || !(all_digits8(load8(p)) & all_digits8(load8(p + 6)))))
            FAIL(code, t->off);
        year = two_digits(p) * 100 + two_digits(p + 2);
        if (PE_UNLIKELY(year < 1))
            FAIL(code, t->off);
        p += 4;
    } else {
        FAIL(PE_DER_ERR_TIME_TAG, t->off);
    }
    /* p now points at MMDDHHMMSSZ: 11 bytes, within the contents checked above */
    month = two_digits(p);
    day = two_digits(p + 2);
    hour = two_digits(p + 4);
    minute = two_digits(p + 6);
    second = two_digits(p + 8);
    if (PE_UNLIKELY(p[10] != 'Z' || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59))
        FAIL(code, t->off);
    leap = month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0);
    if (PE_UNLIKELY(day > dim[month] + leap))
        FAIL(code, t->off);
    return PE_DER_OK;
}

/* tbsCertificate (depth 2). Its elements are at depth 3, theirs at 4. */
PE_ALWAYS_INLINE int check_tbs(pe_queue *q, const uint8_t *buf, const tlv_t *tbs, pe_cert *out, size_t *err_off)
{
    size_t pos = tbs->start, end = tbs->end;
    tlv_t t;
    int version = 0;

    if (PE_UNLIKELY(tbs->tag != 0x30))
        FAIL(PE_DER_ERR_TBS_SEQ, tbs->off);

    /* version [0] EXPLICIT INTEGER OPTIONAL */
    if (pos < end && buf[pos] == 0xA0) {
        tlv_t v;
        size_t vpos;
        TRY(get_tlv(buf, pos, end, &t, err_off));
        pos = t.end;
        vpos = t.start;
        TRY(next_elem(buf, &vpos, t.end, &v, PE_DER_ERR_VERSION, vpos, err_off));
        if (PE_UNLIKELY(v.tag != 0x02))
            FAIL(PE_DER_ERR_VERSION, v.off);
        if (PE_UNLIKELY(vpos != t.end))
            FAIL(PE_DER_ERR_VERSION, vpos);
        if (PE_UNLIKELY(v.end - v.start != 1 || buf[v.start] > 2))
            FAIL(PE_DER_ERR_VERSION_VALUE, v.off);
        version = buf[v.start];
    }
    out->version = version;

    /* serialNumber INTEGER, at least one byte */
    TRY(next_elem(buf, &pos, end, &t, PE_DER_ERR_SERIAL, pos, err_off));
    if (PE_UNLIKELY(t.tag != 0x02))
        FAIL(PE_DER_ERR_SERIAL, t.off);
    if (PE_UNLIKELY(t.end == t.start))
        FAIL(PE_DER_ERR_SERIAL_EMPTY, t.off);
    out->serial.off = t.start;
    out->serial.len = t.end - t.start;

    /* signature AlgorithmIdentifier */
    TRY(next_elem(buf, &pos, end, &t, PE_DER_ERR_ALGID_SEQ, pos, err_off));
    TRY(check_algid(q, buf, &t, 3, err_off));

    /* issuer Name: inner structure not checked, section 1.1 only */
    TRY(next_elem(buf, &pos, end, &t, PE_DER_ERR_ISSUER_SEQ, pos, err_off));
    if (PE_UNLIKELY(t.tag != 0x30))
        FAIL(PE_DER_ERR_ISSUER_SEQ, t.off);
    TRY(queue_inside(q, buf, &t, 4, err_off));
    out->issuer_tlv.off = t.off;
    out->issuer_tlv.len = t.end - t.off;

    /* validity SEQUENCE { Time, Time } */
    TRY(next_elem(buf, &pos, end, &t, PE_DER_ERR_VALIDITY_SEQ, pos, err_off));
    if (PE_UNLIKELY(t.tag != 0x30))
        FAIL(PE_DER_ERR_VALIDITY_SEQ, t.off);
    {
        size_t vpos = t.start;
        tlv_t nb, na;
        TRY(next_elem(buf, &vpos, t.end, &nb, PE_DER_ERR_VALIDITY_COUNT, t.off, err_off));
        TRY(check_time(buf, &nb, err_off));
        TRY(next_elem(buf, &vpos, t.end, &na, PE_DER_ERR_VALIDITY_COUNT, t.off, err_off));
        TRY(check_time(buf, &na, err_off));
        if (PE_UNLIKELY(vpos != t.end))
            FAIL(PE_DER_ERR_VALIDITY_COUNT, t.off);
        out->not_before_tlv.off = nb.off;
        out->not_before_tlv.len = nb.end - nb.off;
        out->not_after_tlv.off = na.off;
        out->not_after_tlv.len = na.end - na.off;
    }

    /* subject Name */
    TRY(next_elem(buf, &pos, end, &t, PE_DER_ERR_SUBJECT_SEQ, pos, err_off));
    if (PE_UNLIKELY(t.tag != 0x30))
        FAIL(PE_DER_ERR_SUBJECT_SEQ, t.off);
    TRY(queue_inside(q, buf, &t, 4, err_off));
    out->subject_tlv.off = t.off;
    out->subject_tlv.len = t.end - t.off;

    /* subjectPublicKeyInfo */
    TRY(next_elem(buf, &pos, end, &t, PE_DER_ERR_SPKI_SEQ, pos, err_off));
    TRY(check_spki(q, buf, &t, 3, err_off));
    out->spki_tlv.off = t.off;
    out->spki_tlv.len = t.end - t.off;

    /* issuerUniqueID [1] IMPLICIT, subjectUniqueID [2] IMPLICIT: v2 or v3
     * only. Primitive tags, so nothing inside to walk. */
    if (pos < end && buf[pos] == 0x81) {
        if (PE_UNLIKELY(version < 1))
            FAIL(PE_DER_ERR_UID_VERSION, pos);
        TRY(get_tlv(buf, pos, end, &t, err_off));
        pos = t.end;
    }
    if (pos < end && buf[pos] == 0x82) {
        if (PE_UNLIKELY(version < 1))
            FAIL(PE_DER_ERR_UID_VERSION, pos);
        TRY(get_tlv(buf, pos, end, &t, err_off));
        pos = t.end;
    }

    /* extensions [3] EXPLICIT SEQUENCE SIZE (1..MAX): v3 only. The
     * Extension elements inside (depth 5) get section 1.1 only. */
    if (pos < end && buf[pos] == 0xA3) {
        tlv_t seq;
        size_t epos;
        if (PE_UNLIKELY(version != 2))
            FAIL(PE_DER_ERR_EXT_VERSION, pos);
        TRY(get_tlv(buf, pos, end, &t, err_off));
        pos = t.end;
        epos = t.start;
        TRY(next_elem(buf, &epos, t.end, &seq, PE_DER_ERR_EXTENSIONS, epos, err_off));
        if (PE_UNLIKELY(seq.tag != 0x30 || seq.end == seq.start))
            FAIL(PE_DER_ERR_EXTENSIONS, seq.off);
        if (PE_UNLIKELY(epos != t.end))
            FAIL(PE_DER_ERR_EXTENSIONS, epos);
        TRY(queue_inside(q, buf, &seq, 5, err_off));
    }

    if (PE_UNLIKELY(pos < end))
        FAIL(PE_DER_ERR_TBS_EXTRA, pos);
    return PE_DER_OK;
}

/* Section 1.2 for the whole input, with section 1.1 for every TLV it reads;
 * the subtrees left to section 1.1 alone are walked on the spot when q is
 * NULL, else queued in *q (q->n set to 0 first). Inlined into its two
 * callers, so each gets its own version (pe_der_parse_cert() walks on the
 * spot, with the values at hand). */
PE_ALWAYS_INLINE int check_shape(pe_queue *q, const uint8_t *buf, size_t len, pe_cert *out, size_t *err_off)
{
    tlv_t cert, tbs, alg, sig;
    size_t pos;

    if (q != NULL)
        q->n = 0;
    if (PE_UNLIKELY(len == 0))
        FAIL(PE_DER_ERR_EMPTY, 0);
    TRY(get_tlv(buf, 0, len, &cert, err_off));
    if (PE_UNLIKELY(cert.end != len))
        FAIL(PE_DER_ERR_TRAILING, cert.end);
    if (PE_UNLIKELY(cert.tag != 0x30))
        FAIL(PE_DER_ERR_CERT_SEQ, 0);

    /* Certificate (depth 1) = { tbsCertificate, signatureAlgorithm, signatureValue } */
    pos = cert.start;
    TRY(next_elem(buf, &pos, cert.end, &tbs, PE_DER_ERR_CERT_COUNT, 0, err_off));
    TRY(check_tbs(q, buf, &tbs, out, err_off));
    TRY(next_elem(buf, &pos, cert.end, &alg, PE_DER_ERR_CERT_COUNT, 0, err_off));
    TRY(check_algid(q, buf, &alg, 2, err_off));
    TRY(next_elem(buf, &pos, cert.end, &sig, PE_DER_ERR_CERT_COUNT, 0, err_off));
    if (PE_UNLIKELY(sig.tag != 0x03))
        FAIL(PE_DER_ERR_SIGVALUE, sig.off);
    TRY(check_bitstring(buf, &sig, err_off));
    if (PE_UNLIKELY(pos != cert.end))
        FAIL(PE_DER_ERR_CERT_COUNT, 0);

    out->tbs_tlv.off = tbs.off;
    out->tbs_tlv.len = tbs.end - tbs.off;
    return PE_DER_OK;
}

int pe_der_parse_cert(const uint8_t *buf, size_t len, pe_cert *out, size_t *err_off)
{
    return check_shape(NULL, buf, len, out, err_off);
}

#ifdef PE_HAVE_SHA256_X86
/* walk_queue() and SHA-256 (SHA-NI) of data[0:len] into out, interleaved:
 * one walk step after every four rounds (see PE_SHANI_SHA256), then the
 * rest of the walk, if any. Returns what walk_queue() would. */
PE_TARGET_SHANI
static int walk_queue_sha_ni(const uint8_t *buf, const pe_queue *q, const uint8_t *data, size_t len, uint8_t out[32],
                              size_t *err_off)
{
    size_t ends[PE_DER_MAX_DEPTH];
    size_t *top = ends, *limit = ends;
    size_t pos = 0, end = 0; /* no subtree started yet */
    int next = 0, rc = PE_DER_OK;

    /* One TLV of the current subtree, or the start of the next one. After
     * an error, pos == end and next == q->n: nothing more happens. */
#define WALK_HOOK                                                          \
    do {                                                                   \
        if (pos != end) {                                                  \
            rc = walk_step(buf, &pos, &end, ends, &top, limit, err_off);   \
            if (rc == PE_WALK_DONE) {                                      \
                rc = PE_DER_OK; /* pos == end: next subtree */             \
            } else if (PE_UNLIKELY(rc != PE_DER_OK)) {                     \
                pos = end;                                                 \
                next = q->n;                                               \
            }                                                              \
        } else if (next < q->n) {                                          \
            const pe_subtree *st_ = &q->t[next++];                         \
            pos = st_->start;                                              \
            end = st_->end;                                                \
            top = limit = ends;                                            \
            if (PE_LIKELY(st_->depth >= 1 && st_->depth <= PE_DER_MAX_DEPTH)) \
                limit = ends + (PE_DER_MAX_DEPTH - st_->depth);            \
            else {                                                         \
                rc = PE_DER_ERR_DEPTH;                                     \
                *err_off = pos;                                            \
                pos = end;                                                 \
                next = q->n;                                               \
            }                                                              \
        }                                                                  \
    } while (0)

    PE_SHANI_SHA256(data, len, out, WALK_HOOK);
    while (pos != end || next < q->n)
        WALK_HOOK;
#undef WALK_HOOK
    return rc;
}
#endif

int pe_der_parse_cert_spki_sha256(const uint8_t *buf, size_t len, pe_cert *out, uint8_t spki_sha256[32],
                                  size_t *err_off)
{
    pe_queue q;
    size_t off = 0;
    int rc = check_shape(&q, buf, len, out, &off);
    if (rc == PE_DER_OK) {
#ifdef PE_HAVE_SHA256_X86
        if (pe__sha256_active_is_shani()) {
            rc = walk_queue_sha_ni(buf, &q, buf + out->spki_tlv.off, out->spki_tlv.len, spki_sha256, &off);
        } else
#endif
        {
            rc = walk_queue(buf, &q, &off);
            if (rc == PE_DER_OK)
                pe__sha256(buf + out->spki_tlv.off, out->spki_tlv.len, spki_sha256);
        }
    }
    /* The checks ran in another order than pe_der_parse_cert()'s (the
     * subtrees last): for an input that breaks several rules, the error to
     * report is the one pe_der_parse_cert() finds, the same through every
     * entry point. Refused inputs are rare; they are parsed again. */
    if (PE_UNLIKELY(rc != PE_DER_OK)) {
        int again = pe_der_parse_cert(buf, len, out, err_off);
        if (again != PE_DER_OK)
            return again;
        /* not reached: both apply the same rules */
        *err_off = off;
        return rc;
    }
    return PE_DER_OK;
}

int pe_der_validate_spki(const uint8_t *buf, size_t len, size_t *err_off)
{
    tlv_t spki;
    if (PE_UNLIKELY(len == 0))
        FAIL(PE_DER_ERR_EMPTY, 0);
    TRY(get_tlv(buf, 0, len, &spki, err_off));
    if (PE_UNLIKELY(spki.end != len))
        FAIL(PE_DER_ERR_TRAILING_SPKI, spki.end);
    return check_spki(NULL, buf, &spki, 1, err_off);
}
