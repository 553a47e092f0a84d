/* pinengine: strict DER / X.509 walker. The rules are ext/CORE_SPEC.md
 * section 1, to the letter: the pure-Python twin applies the same ones and a
 * differential test holds both to the same decision for every input.
 *
 * Two passes over the input:
 *   1. walk_contents(): every TLV, recursively into constructed ones
 *      (section 1.1: tag form, definite minimal lengths, containment, depth);
 *   2. the X.509 shape (section 1.2) over the now known-good TLVs.
 *
 * Invariant for all offset arithmetic: positions are always <= the end of
 * the enclosing element, which is <= len; a TLV is only accepted after
 * checking hdr + contents <= end - pos, so pos + hdr + contents never
 * overflows. */
#include "pe_der.h"

typedef struct {
    uint8_t tag;
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

/* Read the TLV header at buf[pos], inside an element ending at end
 * (pos <= end). Section 1.1 rules for one TLV; the contents must fit. */
static int read_tlv(const uint8_t *buf, size_t pos, size_t end, tlv_t *t, size_t *err_off)
{
    size_t avail, hdr, clen;
    uint8_t tag, first;

    /* Tag problems are reported at the tag byte, length problems at the
     * first length byte (pos + 1), as the pure-Python twin does. */
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

/* Section 1.1 for the TLVs filling buf[pos:end], which sit at depth `depth`.
 * Recursion depth is bounded: a call with depth > PE_DER_MAX_DEPTH returns
 * before recursing, so there are at most PE_DER_MAX_DEPTH + 1 frames. */
static int walk_contents(const uint8_t *buf, size_t pos, size_t end, int depth, size_t *err_off)
{
    while (pos < end) {
        tlv_t t;
        int rc;
        if (depth > PE_DER_MAX_DEPTH) {
            *err_off = pos;
            return PE_DER_ERR_DEPTH;
        }
        rc = read_tlv(buf, pos, end, &t, err_off);
        if (rc != PE_DER_OK)
            return rc;
        if (t.tag & 0x20) {
            rc = walk_contents(buf, t.start, t.end, depth + 1, err_off);
            if (rc != PE_DER_OK)
                return rc;
        }
        pos = t.end;
    }
    return PE_DER_OK;
}

/* Section 1.1 for a whole input: one TLV at depth 1, walked, nothing after. */
static int walk_input(const uint8_t *buf, size_t len, tlv_t *outer, int trailing_code, size_t *err_off)
{
    int rc;
    if (len == 0) {
        *err_off = 0;
        return PE_DER_ERR_EMPTY;
    }
    rc = read_tlv(buf, 0, len, outer, err_off);
    if (rc != PE_DER_OK)
        return rc;
    if (outer->tag & 0x20) {
        rc = walk_contents(buf, outer->start, outer->end, 2, err_off);
        if (rc != PE_DER_OK)
            return rc;
    }
    if (outer->end != len) {
        *err_off = outer->end;
        return trailing_code;
    }
    return PE_DER_OK;
}

/* ---- section 1.2, over TLVs that already passed section 1.1 ---- */

/* Read the next element of a constructed TLV's contents, advancing *pos.
 * A missing element (pos at end) gives `missing_code` at that offset. */
static int next_elem(const uint8_t *buf, size_t *pos, size_t end, tlv_t *t, int missing_code, size_t *err_off)
{
    int rc;
    if (*pos >= end) {
        *err_off = *pos;
        return missing_code;
    }
    rc = read_tlv(buf, *pos, end, t, err_off);
    if (rc != PE_DER_OK)
        return rc;
    *pos = t->end;
    return PE_DER_OK;
}

static int count_elems(const uint8_t *buf, const tlv_t *t, size_t *count, size_t *err_off)
{
    size_t pos = t->start, n = 0;
    while (pos < t->end) {
        tlv_t c;
        int rc = read_tlv(buf, pos, t->end, &c, err_off);
        if (rc != PE_DER_OK)
            return rc;
        pos = c.end;
        n++;
    }
    *count = n;
    return PE_DER_OK;
}

static int check_bitstring(const uint8_t *buf, const tlv_t *t, size_t *err_off)
{
    size_t n = t->end - t->start;
    *err_off = t->off;
    if (n < 1)
        return PE_DER_ERR_BITSTRING;
    if (buf[t->start] > 7)
        return PE_DER_ERR_BITSTRING;
    if (n == 1 && buf[t->start] != 0)
        return PE_DER_ERR_BITSTRING;
    return PE_DER_OK;
}

/* AlgorithmIdentifier: SEQUENCE { OBJECT IDENTIFIER (>= 1 byte), at most one more TLV } */
static int check_algid(const uint8_t *buf, const tlv_t *t, size_t *err_off)
{
    size_t pos = t->start;
    tlv_t oid, param;
    int rc;
    if (t->tag != 0x30) {
        *err_off = t->off;
        return PE_DER_ERR_ALGID_SEQ;
    }
    rc = next_elem(buf, &pos, t->end, &oid, PE_DER_ERR_ALGID_OID, err_off);
    if (rc != PE_DER_OK)
        return rc;
    if (oid.tag != 0x06) {
        *err_off = oid.off;
        return PE_DER_ERR_ALGID_OID;
    }
    if (oid.end == oid.start) {
        *err_off = oid.off;
        return PE_DER_ERR_OID_EMPTY;
    }
    if (pos < t->end) {
        rc = next_elem(buf, &pos, t->end, &param, PE_DER_ERR_ALGID_EXTRA, err_off);
        if (rc != PE_DER_OK)
            return rc;
    }
    if (pos < t->end) {
        *err_off = pos;
        return PE_DER_ERR_ALGID_EXTRA;
    }
    return PE_DER_OK;
}

/* SubjectPublicKeyInfo: SEQUENCE { AlgorithmIdentifier, BIT STRING } exactly. */
static int check_spki(const uint8_t *buf, const tlv_t *t, size_t *err_off)
{
    size_t pos = t->start;
    tlv_t alg, key;
    int rc;
    if (t->tag != 0x30) {
        *err_off = t->off;
        return PE_DER_ERR_SPKI_SEQ;
    }
    rc = next_elem(buf, &pos, t->end, &alg, PE_DER_ERR_ALGID_SEQ, err_off);
    if (rc != PE_DER_OK)
        return rc;
    rc = check_algid(buf, &alg, err_off);
    if (rc != PE_DER_OK)
        return rc;
    rc = next_elem(buf, &pos, t->end, &key, PE_DER_ERR_SPKI_BITSTRING, err_off);
    if (rc != PE_DER_OK)
        return rc;
    if (key.tag != 0x03) {
        *err_off = key.off;
        return PE_DER_ERR_SPKI_BITSTRING;
    }
    rc = check_bitstring(buf, &key, err_off);
    if (rc != PE_DER_OK)
        return rc;
    if (pos < t->end) {
        *err_off = pos;
        return PE_DER_ERR_SPKI_EXTRA;
    }
    return PE_DER_OK;
}

static int digits(const uint8_t *p, size_t n, int *value)
{
    size_t i;
    int v = 0;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    *value = v;
    return 1;
}

static int days_in_month(int year, int month)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
        return 29;
    return dim[month - 1];
}

/* Time: UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ, a real
 * Gregorian date and time of day. */
static int check_time(const uint8_t *buf, const tlv_t *t, size_t *err_off)
{
    const uint8_t *p = buf + t->start;
    size_t n = t->end - t->start;
    int year, month, day, hour, minute, second, code;

    *err_off = t->off;
    if (t->tag == 0x17) {
        code = PE_DER_ERR_UTCTIME;
        if (n != 13 || !digits(p, 2, &year))
            return code;
        year += year >= 50 ? 1900 : 2000;
        p += 2;
    } else if (t->tag == 0x18) {
        code = PE_DER_ERR_GENTIME;
        if (n != 15 || !digits(p, 4, &year) || year < 1)
            return code;
        p += 4;
    } else {
        return PE_DER_ERR_TIME_TAG;
    }
    /* p now points at MMDDHHMMSSZ: 11 bytes, within the contents checked above */
    if (!digits(p, 2, &month) || !digits(p + 2, 2, &day) || !digits(p + 4, 2, &hour)
        || !digits(p + 6, 2, &minute) || !digits(p + 8, 2, &second) || p[10] != 'Z')
        return code;
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23
        || minute > 59 || second > 59)
        return code;
    return PE_DER_OK;
}

static int check_tbs(const uint8_t *buf, const tlv_t *tbs, pe_cert *out, size_t *err_off)
{
    size_t pos = tbs->start, end = tbs->end;
    tlv_t t;
    int rc, version = 0;

    if (tbs->tag != 0x30) {
        *err_off = tbs->off;
        return PE_DER_ERR_TBS_SEQ;
    }

    /* version [0] EXPLICIT INTEGER OPTIONAL */
    if (pos < end && buf[pos] == 0xA0) {
        tlv_t v;
        size_t vpos;
        rc = next_elem(buf, &pos, end, &t, PE_DER_ERR_VERSION, err_off);
        if (rc != PE_DER_OK)
            return rc;
        vpos = t.start;
        rc = next_elem(buf, &vpos, t.end, &v, PE_DER_ERR_VERSION, err_off);
        if (rc != PE_DER_OK)
            return rc;
        if (v.tag != 0x02) {
            *err_off = v.off;
            return PE_DER_ERR_VERSION;
        }
        if (vpos != t.end) {
            *err_off = vpos;
            return PE_DER_ERR_VERSION;
        }
        if (v.end - v.start != 1 || buf[v.start] > 2) {
            *err_off = v.off;
            return PE_DER_ERR_VERSION_VALUE;
        }
        version = buf[v.start];
    }
    out->version = version;

    /* serialNumber INTEGER, at least one byte */
    rc = next_elem(buf, &pos, end, &t, PE_DER_ERR_SERIAL, err_off);
    if (rc != PE_DER_OK)
        return rc;
    if (t.tag != 0x02) {
        *err_off = t.off;
        return PE_DER_ERR_SERIAL;
    }
    if (t.end == t.start) {
        *err_off = t.off;
        return PE_DER_ERR_SERIAL_EMPTY;
    }
    out->serial.off = t.start;
    out->serial.len = t.end - t.start;

    /* signature AlgorithmIdentifier */
    rc = next_elem(buf, &pos, end, &t, PE_DER_ERR_ALGID_SEQ, err_off);
    if (rc != PE_DER_OK)
        return rc;
    rc = check_algid(buf, &t, err_off);
    if (rc != PE_DER_OK)
        return rc;

    /* issuer Name */
    rc = next_elem(buf, &pos, end, &t, PE_DER_ERR_ISSUER_SEQ, err_off);
    if (rc != PE_DER_OK)
        return rc;
    if (t.tag != 0x30) {
        *err_off = t.off;
        return PE_DER_ERR_ISSUER_SEQ;
    }
    out->issuer_tlv.off = t.off;
    out->issuer_tlv.len = t.end - t.off;

    /* validity SEQUENCE { Time, Time } */
    rc = next_elem(buf, &pos, end, &t, PE_DER_ERR_VALIDITY_SEQ, err_off);
    if (rc != PE_DER_OK)
        return rc;
    if (t.tag != 0x30) {
        *err_off = t.off;
        return PE_DER_ERR_VALIDITY_SEQ;
    }
    {
        size_t count, vpos = t.start;
        tlv_t nb, na;
        rc = count_elems(buf, &t, &count, err_off);
        if (rc != PE_DER_OK)
            return rc;
        if (count != 2) {
            *err_off = t.off;
            return PE_DER_ERR_VALIDITY_COUNT;
        }
        rc = next_elem(buf, &vpos, t.end, &nb, PE_DER_ERR_VALIDITY_COUNT, err_off);
        if (rc != PE_DER_OK)
            return rc;
        rc = check_time(buf, &nb, err_off);
        if (rc != PE_DER_OK)
            return rc;
        rc = next_elem(buf, &vpos, t.end, &na, PE_DER_ERR_VALIDITY_COUNT, err_off);
        if (rc != PE_DER_OK)
            return rc;
        rc = check_time(buf, &na, err_off);
        if (rc != PE_DER_OK)
            return rc;
        out->not_before_tlv.off = nb.off;
        out->not_before_tlv.len = nb.end - nb.off;
        out->not_after_tlv.off = na.off;
        out->not_after_tlv.len = na.end - na.off;
    }

    /* subject Name */
    rc = next_elem(buf, &pos, end, &t, PE_DER_ERR_SUBJECT_SEQ, err_off);
    if (rc != PE_DER_OK)
        return rc;
    if (t.tag != 0x30) {
        *err_off = t.off;
        return PE_DER_ERR_SUBJECT_SEQ;
    }
    out->subject_tlv.off = t.off;
    out->subject_tlv.len = t.end - t.off;

    /* subjectPublicKeyInfo */
    rc = next_elem(buf, &pos, end, &t, PE_DER_ERR_SPKI_SEQ, err_off);
    if (rc != PE_DER_OK)
        return rc;
    rc = check_spki(buf, &t, err_off);
    if (rc != PE_DER_OK)
        return rc;
    out->spki_tlv.off = t.off;
    out->spki_tlv.len = t.end - t.off;

    /* issuerUniqueID [1] IMPLICIT, subjectUniqueID [2] IMPLICIT: v2 or v3 only */
    if (pos < end && buf[pos] == 0x81) {
        if (version < 1) {
            *err_off = pos;
            return PE_DER_ERR_UID_VERSION;
        }
        rc = next_elem(buf, &pos, end, &t, PE_DER_ERR_TBS_EXTRA, err_off);
        if (rc != PE_DER_OK)
            return rc;
    }
    if (pos < end && buf[pos] == 0x82) {
        if (version < 1) {
            *err_off = pos;
            return PE_DER_ERR_UID_VERSION;
        }
        rc = next_elem(buf, &pos, end, &t, PE_DER_ERR_TBS_EXTRA, err_off);
        if (rc != PE_DER_OK)
            return rc;
    }

    /* extensions [3] EXPLICIT SEQUENCE SIZE (1..MAX): v3 only */
    if (pos < end && buf[pos] == 0xA3) {
        tlv_t seq;
        size_t epos;
        if (version != 2) {
            *err_off = pos;
            return PE_DER_ERR_EXT_VERSION;
        }
        rc = next_elem(buf, &pos, end, &t, PE_DER_ERR_TBS_EXTRA, err_off);
        if (rc != PE_DER_OK)
            return rc;
        epos = t.start;
        rc = next_elem(buf, &epos, t.end, &seq, PE_DER_ERR_EXTENSIONS, err_off);
        if (rc != PE_DER_OK)
            return rc;
        if (seq.tag != 0x30 || seq.end == seq.start) {
            *err_off = seq.off;
            return PE_DER_ERR_EXTENSIONS;
        }
        if (epos != t.end) {
            *err_off = epos;
            return PE_DER_ERR_EXTENSIONS;
        }
    }

    if (pos < end) {
        *err_off = pos;
        return PE_DER_ERR_TBS_EXTRA;
    }
    return PE_DER_OK;
}

int pe_der_parse_cert(const uint8_t *buf, size_t len, pe_cert *out, size_t *err_off)
{
    tlv_t cert, tbs, alg, sig;
    size_t pos, count;
    int rc;

    rc = walk_input(buf, len, &cert, PE_DER_ERR_TRAILING, err_off);
    if (rc != PE_DER_OK)
        return rc;
    if (cert.tag != 0x30) {
        *err_off = cert.off;
        return PE_DER_ERR_CERT_SEQ;
    }
    rc = count_elems(buf, &cert, &count, err_off);
    if (rc != PE_DER_OK)
        return rc;
    if (count != 3) {
        *err_off = cert.off;
        return PE_DER_ERR_CERT_COUNT;
    }
    pos = cert.start;
    rc = next_elem(buf, &pos, cert.end, &tbs, PE_DER_ERR_CERT_COUNT, err_off);
    if (rc != PE_DER_OK)
        return rc;
    rc = next_elem(buf, &pos, cert.end, &alg, PE_DER_ERR_CERT_COUNT, err_off);
    if (rc != PE_DER_OK)
        return rc;
    rc = next_elem(buf, &pos, cert.end, &sig, PE_DER_ERR_CERT_COUNT, err_off);
    if (rc != PE_DER_OK)
        return rc;

    rc = check_tbs(buf, &tbs, out, err_off);
    if (rc != PE_DER_OK)
        return rc;
    rc = check_algid(buf, &alg, err_off);
    if (rc != PE_DER_OK)
        return rc;
    if (sig.tag != 0x03) {
        *err_off = sig.off;
        return PE_DER_ERR_SIGVALUE;
    }
    rc = check_bitstring(buf, &sig, err_off);
    if (rc != PE_DER_OK)
        return rc;

    out->tbs_tlv.off = tbs.off;
    out->tbs_tlv.len = tbs.end - tbs.off;
    return PE_DER_OK;
}

int pe_der_validate_spki(const uint8_t *buf, size_t len, size_t *err_off)
{
    tlv_t spki;
    int rc = walk_input(buf, len, &spki, PE_DER_ERR_TRAILING_SPKI, err_off);
    if (rc != PE_DER_OK)
        return rc;
    return check_spki(buf, &spki, err_off);
}
