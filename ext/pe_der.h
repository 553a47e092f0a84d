/* pinengine: a strict DER / X.509 walker (ext/CORE_SPEC.md section 1).
 *
 * Input is hostile: every read is bounds-checked, offset arithmetic never
 * overflows, and nothing recurses (nesting is followed with a fixed stack of
 * PE_DER_MAX_DEPTH entries). No allocation and no global state, so every
 * function here is thread-safe and may run without the GIL. */
#ifndef PE_DER_H
#define PE_DER_H

#include <stddef.h>
#include <stdint.h>

/* The outermost TLV is depth 1; a TLV at a greater depth is refused. */
#define PE_DER_MAX_DEPTH 32

/* Error codes. 0 is success; pe_der_strerror() gives the message. */
enum {
    PE_DER_OK = 0,
    /* section 1.1: any TLV */
    PE_DER_ERR_EMPTY,             /* "empty input" */
    PE_DER_ERR_TRUNCATED,         /* "truncated TLV header" */
    PE_DER_ERR_HIGH_TAG,          /* "high-tag-number form" */
    PE_DER_ERR_INDEFINITE,        /* "indefinite length" */
    PE_DER_ERR_LENGTH_SIZE,       /* "length of more than 4 bytes" */
    PE_DER_ERR_NONMINIMAL,        /* "non-minimal length" */
    PE_DER_ERR_OVERRUN,           /* "length exceeds enclosing element" */
    PE_DER_ERR_DEPTH,             /* "nesting deeper than 32" */
    PE_DER_ERR_TRAILING,          /* "trailing bytes after certificate" */
    PE_DER_ERR_TRAILING_SPKI,     /* "trailing bytes after subjectPublicKeyInfo" */
    /* section 1.2: the X.509 structure */
    PE_DER_ERR_CERT_SEQ,          /* "expected SEQUENCE for Certificate" */
    PE_DER_ERR_CERT_COUNT,        /* "Certificate must have exactly 3 elements" */
    PE_DER_ERR_TBS_SEQ,           /* "expected SEQUENCE for tbsCertificate" */
    PE_DER_ERR_VERSION,           /* "version must hold exactly one INTEGER" */
    PE_DER_ERR_VERSION_VALUE,     /* "bad version value" */
    PE_DER_ERR_SERIAL,            /* "expected INTEGER for serialNumber" */
    PE_DER_ERR_SERIAL_EMPTY,      /* "empty serialNumber" */
    PE_DER_ERR_ALGID_SEQ,         /* "expected SEQUENCE for AlgorithmIdentifier" */
    PE_DER_ERR_ALGID_OID,         /* "expected OBJECT IDENTIFIER in AlgorithmIdentifier" */
    PE_DER_ERR_OID_EMPTY,         /* "empty OBJECT IDENTIFIER" */
    PE_DER_ERR_ALGID_EXTRA,       /* "extra elements in AlgorithmIdentifier" */
    PE_DER_ERR_ISSUER_SEQ,        /* "expected SEQUENCE for issuer" */
    PE_DER_ERR_VALIDITY_SEQ,      /* "expected SEQUENCE for validity" */
    PE_DER_ERR_VALIDITY_COUNT,    /* "validity must have exactly 2 elements" */
    PE_DER_ERR_TIME_TAG,          /* "expected UTCTime or GeneralizedTime" */
    PE_DER_ERR_UTCTIME,           /* "bad UTCTime" */
    PE_DER_ERR_GENTIME,           /* "bad GeneralizedTime" */
    PE_DER_ERR_SUBJECT_SEQ,       /* "expected SEQUENCE for subject" */
    PE_DER_ERR_SPKI_SEQ,          /* "expected SEQUENCE for subjectPublicKeyInfo" */
    PE_DER_ERR_SPKI_BITSTRING,    /* "expected BIT STRING for subjectPublicKey" */
    PE_DER_ERR_SPKI_EXTRA,        /* "extra elements in subjectPublicKeyInfo" */
    PE_DER_ERR_BITSTRING,         /* "bad BIT STRING" */
    PE_DER_ERR_UID_VERSION,       /* "unique identifier requires version 2 or 3" */
    PE_DER_ERR_EXT_VERSION,       /* "extensions require version 3" */
    PE_DER_ERR_EXTENSIONS,        /* "extensions must hold exactly one non-empty SEQUENCE" */
    PE_DER_ERR_TBS_EXTRA,         /* "unexpected element in tbsCertificate" */
    PE_DER_ERR_SIGVALUE,          /* "expected BIT STRING for signatureValue" */
    PE_DER_ERR__COUNT
};

typedef struct {
    size_t off; /* from the start of the input */
    size_t len;
} pe_span;

/* What pe_der_parse_cert() reads out of a certificate it accepted. The *_tlv
 * spans cover the whole TLV (tag, length and contents). */
typedef struct {
    pe_span tbs_tlv;
    pe_span serial;          /* contents of the serialNumber INTEGER (>= 1 byte) */
    pe_span issuer_tlv;
    pe_span not_before_tlv;
    pe_span not_after_tlv;
    pe_span subject_tlv;
    pe_span spki_tlv;
    int version;             /* encoded value 0, 1 or 2; 0 when absent */
} pe_cert;

/* Validate buf[0:len] as a certificate (section 1). Returns PE_DER_OK and
 * fills *out, or an error code and sets *err_off to the byte offset of the
 * problem (out is then unspecified). out and err_off must not be NULL;
 * buf may be NULL only when len is 0.
 *
 * Offsets: a bad tag (or a header cut short before its length byte) is
 * reported at the tag byte; every length problem (indefinite, too long,
 * non-minimal, cut short, exceeding the enclosing element) at the first
 * length byte; a TLV deeper than 32 at its tag byte; trailing bytes where
 * they begin; a structural problem (section 1.2) at the tag byte of the
 * offending TLV, or where a missing element should have begun.
 *
 * The input is read in one pass, so when it breaks several rules the one
 * reported is the first met: the outermost header and trailing bytes first,
 * then the rest in order, each element checked (section 1.1, its part of
 * section 1.2, and section 1.1 inside it) before the next one is read. */
int pe_der_parse_cert(const uint8_t *buf, size_t len, pe_cert *out, size_t *err_off);

/* pe_der_parse_cert() plus the SHA-256 of the subjectPublicKeyInfo TLV into
 * spki_sha256 (32 bytes; meaningful only on PE_DER_OK), with the same
 * result, *out and *err_off as pe_der_parse_cert(). Faster than the two
 * calls in a row where SHA-256 runs on SHA-NI: the SPKI is hashed as soon as
 * its place is known, and the walk of the rest of the certificate (Names,
 * extensions) runs in the shadow of the hash rounds. Uses the SHA-256
 * implementation pe_hash_init() chose (ext/pe_hash.h). */
int pe_der_parse_cert_spki_sha256(const uint8_t *buf, size_t len, pe_cert *out, uint8_t spki_sha256[32],
                                  size_t *err_off);

/* Validate buf[0:len] as a standalone SubjectPublicKeyInfo TLV: the section
 * 1.1 rules (with the SPKI as the depth-1 TLV) plus the SPKI rule of 1.2,
 * nothing trailing. Returns PE_DER_OK or an error code with *err_off. */
int pe_der_validate_spki(const uint8_t *buf, size_t len, size_t *err_off);

/* Short message for an error code ("indefinite length", ...). Never NULL. */
const char *pe_der_strerror(int code);

#endif
