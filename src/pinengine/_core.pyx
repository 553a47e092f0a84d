# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True, freethreading_compatible=True
"""The compiled core of pinengine: strict DER walking, digests and pin matching.

The contract is ext/CORE_SPEC.md; ``pinengine._core_py`` is the pure-Python
twin with the same API and the same decisions. The certificate walker is
ext/der.c, the digests ext/sha*.c (ext/pe_hash.h); this module adds argument
checking, error messages and the chain matcher, which runs without the GIL
in ``match_chains``.

It is declared free-threading compatible (``freethreading_compatible``: a
free-threaded CPython keeps the GIL off when importing it): no module state
changes after import (``pe_hash_init`` runs once, at import), a PinSet never
changes after construction, and before the matcher lets go of the GIL it
holds a reference to every certificate it will read (or a buffer view that
pins it, or an immutable tuple or a copy that holds it); on a free-threaded
build it copies a list chain before reading it.
"""

import os as _os

from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcmp, memcpy, memset
from cpython.buffer cimport PyObject_CheckBuffer, PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.list cimport PyList_New, PyList_SET_ITEM, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawRealloc, PyMem_RawFree
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.float cimport PyFloat_AS_DOUBLE
cimport cython

from pinengine._errors import CertificateParseError
from pinengine._errors import der_input_error as _der_input_error
from pinengine._types import (
    ALGORITHMS,
    KIND_CERT,
    KIND_SPKI,
    POS_ANY,
    POS_INTERMEDIATE,
    POS_LEAF,
    POS_ROOT,
    build_certificate_info as _build_certificate_info,
)


cdef extern from "pe_hash.h" nogil:
    enum:
        PE_SHA1
        PE_SHA256
        PE_SHA384
        PE_SHA512
        PE_MAX_DIGEST
    size_t pe_hash_len(int alg)
    int pe_hash(int alg, const uint8_t *data, size_t len, uint8_t *out)
    void pe_hash_init(int force_portable)
    const char *pe_sha256_active()
    int pe_sha256_available(const char *name)
    int pe_sha256_with(const char *name, const uint8_t *data, size_t len, uint8_t *out)


cdef extern from *:
    """
    #ifdef Py_GIL_DISABLED
    #define PE_GIL_DISABLED 1
    #else
    #define PE_GIL_DISABLED 0
    #endif
    """
    # 1 on a free-threaded CPython build (no GIL), else 0.
    bint PE_GIL_DISABLED


cdef extern from "Python.h":
    void PyObject_GC_Track(PyObject *op)
    void PyObject_GC_UnTrack(PyObject *op)


cdef extern from "pe_der.h" nogil:
    enum:
        PE_DER_OK
    ctypedef struct pe_span:
        size_t off
        size_t len
    ctypedef struct pe_cert:
        pe_span tbs_tlv
        pe_span serial
        pe_span issuer_tlv
        pe_span not_before_tlv
        pe_span not_after_tlv
        pe_span subject_tlv
        pe_span spki_tlv
        int version
    int pe_der_parse_cert(const uint8_t *buf, size_t len, pe_cert *out, size_t *err_off)
    int pe_der_parse_cert_spki_sha256(const uint8_t *buf, size_t len, pe_cert *out, uint8_t *spki_sha256,
                                      size_t *err_off)
    int pe_der_validate_spki(const uint8_t *buf, size_t len, size_t *err_off)
    const char *pe_der_strerror(int code)


__all__ = [
    "ALGORITHMS",
    "BACKEND",
    "KIND_CERT",
    "KIND_SPKI",
    "POS_ANY",
    "POS_INTERMEDIATE",
    "POS_LEAF",
    "POS_ROOT",
    "PinSet",
    "Tally",
    "cert_digest",
    "cert_sha256",
    "extract_spki",
    "hash_bytes",
    "match_chain",
    "match_chains",
    "outcome_code",
    "parse_certificate",
    "recall_outcome",
    "recall_outcomes",
    "sha256_implementation",
    "spki_digest",
    "spki_sha256",
    "validate_spki",
]

BACKEND = "compiled"

# The C side uses these values directly; they must agree with pinengine._types.
cdef enum:
    _KIND_SPKI = 0
    _KIND_CERT = 1
    _POS_LEAF = 1
    _POS_INTERMEDIATE = 2
    _POS_ROOT = 4
    _POS_ANY = 7

if (KIND_SPKI, KIND_CERT, POS_LEAF, POS_INTERMEDIATE, POS_ROOT, POS_ANY) != (
    _KIND_SPKI, _KIND_CERT, _POS_LEAF, _POS_INTERMEDIATE, _POS_ROOT, _POS_ANY
):
    raise ImportError("pinengine._core was built for other constants than pinengine._types")

# algorithm name -> (pe_hash id, index 0..3 used for the per-certificate digest cache)
_ALG_IDS = {"sha1": (PE_SHA1, 0), "sha256": (PE_SHA256, 1), "sha384": (PE_SHA384, 2), "sha512": (PE_SHA512, 3)}

# The digest cache slot (kind * 4 + algorithm index) of an SPKI SHA-256 pin.
cdef enum:
    _SLOT_SPKI_SHA256 = _KIND_SPKI * 4 + 1

# A single bytes-like object or str is refused where a sequence (of pins,
# certificates or jobs) is expected, even though it is iterable.
_NOT_A_SEQUENCE = (str, bytes, bytearray, memoryview)

# Inputs at least this large are hashed with the GIL released.
cdef Py_ssize_t _NOGIL_HASH_MIN = 65536

pe_hash_init(1 if _os.environ.get("PINENGINE_SHA256") == "portable" else 0)


# ---------------------------------------------------------------- helpers

cdef int _get_view(object obj, Py_buffer *view) except -1:
    """Fill view with a contiguous read-only byte view of obj (release it with PyBuffer_Release).

    Anything without the buffer protocol (str, int, None, ...) is a TypeError.
    A non-contiguous buffer (a strided memoryview) is copied first.
    """
    if not PyObject_CheckBuffer(obj):
        raise TypeError(f"a bytes-like object is required, not {type(obj).__name__!r}")
    try:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
    except BufferError:
        PyObject_GetBuffer(memoryview(obj).tobytes(), view, PyBUF_SIMPLE)
    return 0


cdef int _alg(object algorithm, int *index=NULL) except -1:
    """pe_hash id of an algorithm name: TypeError for a non-str, ValueError for a name not in ALGORITHMS."""
    if not isinstance(algorithm, str):
        raise TypeError(f"algorithm must be a str, not {type(algorithm).__name__!r}")
    entry = _ALG_IDS.get(algorithm)
    if entry is None:
        raise ValueError(f"unknown algorithm {algorithm!r}: expected one of {', '.join(ALGORITHMS)}")
    if index != NULL:
        index[0] = entry[1]
    return entry[0]


cdef str _der_message(int code, size_t off):
    return f"{pe_der_strerror(code).decode('ascii')} at offset {off}"


cdef object _cert_error(int code, size_t off, Py_ssize_t index):
    """The CertificateParseError for a walker failure (of chain element index, if >= 0)."""
    msg = "malformed certificate: " + _der_message(code, off)
    if index >= 0:
        msg = f"certificate {index}: {msg}"
    return CertificateParseError(msg)


cdef int _parse_view(Py_buffer *view, pe_cert *cert) except -1:
    cdef size_t off = 0
    cdef int rc = pe_der_parse_cert(<const uint8_t *>view.buf, <size_t>view.len, cert, &off)
    if rc != PE_DER_OK:
        raise _cert_error(rc, off, -1)
    return 0


cdef bytes _slice(Py_buffer *view, pe_span span):
    return PyBytes_FromStringAndSize(<const char *>view.buf + span.off, <Py_ssize_t>span.len)


cdef bytes _digest_of(int alg, const uint8_t *data, size_t length):
    cdef uint8_t out[PE_MAX_DIGEST]
    cdef int rc
    if <Py_ssize_t>length >= _NOGIL_HASH_MIN:
        with nogil:
            rc = pe_hash(alg, data, length, out)
    else:
        rc = pe_hash(alg, data, length, out)
    if rc != 0:
        raise RuntimeError(f"pe_hash failed for algorithm id {alg}")
    return PyBytes_FromStringAndSize(<const char *>out, <Py_ssize_t>pe_hash_len(alg))


cdef bytes _cert_digest(object der, int alg, bint spki):
    cdef Py_buffer view
    cdef bint have_view = False
    cdef pe_cert cert
    cdef const uint8_t *buf
    cdef size_t n, off = 0
    cdef int rc
    cdef uint8_t out[32]
    if PyBytes_CheckExact(der):
        # An exact bytes object is immutable and our caller's reference keeps
        # it alive for the whole call: no buffer needed.
        buf = <const uint8_t *>PyBytes_AS_STRING(der)
        n = <size_t>PyBytes_GET_SIZE(der)
    else:
        _get_view(der, &view)
        have_view = True
        buf = <const uint8_t *>view.buf
        n = <size_t>view.len
    try:
        if spki and alg == PE_SHA256 and <Py_ssize_t>n < _NOGIL_HASH_MIN:
            # The usual pin: walk and hash in one call (pe_der.h).
            rc = pe_der_parse_cert_spki_sha256(buf, n, &cert, out, &off)
            if rc != PE_DER_OK:
                raise _cert_error(rc, off, -1)
            return PyBytes_FromStringAndSize(<const char *>out, 32)
        rc = pe_der_parse_cert(buf, n, &cert, &off)
        if rc != PE_DER_OK:
            raise _cert_error(rc, off, -1)
        if spki:
            return _digest_of(alg, buf + cert.spki_tlv.off, cert.spki_tlv.len)
        return _digest_of(alg, buf, n)
    finally:
        if have_view:
            PyBuffer_Release(&view)


# ---------------------------------------------------------------- digests and parsing

def hash_bytes(data, algorithm):
    """Digest of data (any bytes-like object) with algorithm ("sha1", "sha256", "sha384", "sha512")."""
    cdef int alg = _alg(algorithm)
    cdef Py_buffer view
    if PyBytes_CheckExact(data):  # immutable, and our caller keeps it alive: no buffer needed
        return _digest_of(alg, <const uint8_t *>PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
    _get_view(data, &view)
    try:
        return _digest_of(alg, <const uint8_t *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)


def spki_sha256(der):
    """SHA-256 of the certificate's subjectPublicKeyInfo, exactly as encoded.

    Raises CertificateParseError when ``der`` is not a well-formed DER
    certificate (PEM text is told to go through ``load_certificates``).
    """
    try:
        return _cert_digest(der, PE_SHA256, True)
    except (CertificateParseError, TypeError) as exc:
        raise _der_input_error(der, exc) from None


def cert_sha256(der):
    """SHA-256 of the whole DER certificate, which must be well-formed."""
    try:
        return _cert_digest(der, PE_SHA256, False)
    except (CertificateParseError, TypeError) as exc:
        raise _der_input_error(der, exc) from None


def spki_digest(der, algorithm):
    """Digest of the certificate's subjectPublicKeyInfo TLV with algorithm."""
    return _cert_digest(der, _alg(algorithm), True)


def cert_digest(der, algorithm):
    """Digest of the whole certificate (which must be well-formed) with algorithm."""
    return _cert_digest(der, _alg(algorithm), False)


def extract_spki(der):
    """The subjectPublicKeyInfo TLV of the certificate, as bytes."""
    cdef Py_buffer view
    cdef pe_cert cert
    _get_view(der, &view)
    try:
        _parse_view(&view, &cert)
        return _slice(&view, cert.spki_tlv)
    finally:
        PyBuffer_Release(&view)


def validate_spki(data):
    """Check that data is exactly one well-formed SubjectPublicKeyInfo TLV; CertificateParseError if not."""
    cdef Py_buffer view
    cdef size_t off = 0
    cdef int rc
    _get_view(data, &view)
    try:
        rc = pe_der_validate_spki(<const uint8_t *>view.buf, <size_t>view.len, &off)
    finally:
        PyBuffer_Release(&view)
    if rc != PE_DER_OK:
        raise CertificateParseError("malformed subjectPublicKeyInfo: " + _der_message(rc, off))


def parse_certificate(der):
    """Read version, serial, names, validity and SPKI out of a DER certificate."""
    try:
        return _parse_certificate(der)
    except (CertificateParseError, TypeError) as exc:
        raise _der_input_error(der, exc) from None


cdef object _parse_certificate(object der):
    cdef Py_buffer view
    cdef pe_cert cert
    cdef Py_ssize_t n
    _get_view(der, &view)
    try:
        _parse_view(&view, &cert)
        n = view.len
        whole = der if type(der) is bytes else PyBytes_FromStringAndSize(<const char *>view.buf, n)
        serial = _slice(&view, cert.serial)
        issuer = _slice(&view, cert.issuer_tlv)
        subject = _slice(&view, cert.subject_tlv)
        not_before = _slice(&view, cert.not_before_tlv)
        not_after = _slice(&view, cert.not_after_tlv)
        spki = _slice(&view, cert.spki_tlv)
        version = cert.version
    finally:
        PyBuffer_Release(&view)
    return _build_certificate_info(whole, version, serial, issuer, subject, not_before, not_after, spki)


def sha256_implementation():
    """The SHA-256 code in use: "sha-ni", "armv8" or "portable"."""
    return pe_sha256_active().decode("ascii")


def _sha256_with(name, data):
    """SHA-256 of data with a named implementation; ValueError if it cannot run here."""
    cdef uint8_t out[32]
    cdef Py_buffer view
    cdef int rc
    if not isinstance(name, str):
        raise TypeError(f"implementation name must be str, not {type(name).__name__!r}")
    if "\0" in name:
        raise ValueError(f"unknown SHA-256 implementation {name!r}")
    cname = (<str>name).encode("utf-8")
    _get_view(data, &view)
    try:
        rc = pe_sha256_with(cname, <const uint8_t *>view.buf, <size_t>view.len, out)
    finally:
        PyBuffer_Release(&view)
    if rc != 0:
        raise ValueError(f"SHA-256 implementation {name!r} is unknown or not available on this CPU")
    return PyBytes_FromStringAndSize(<const char *>out, 32)


def _sha256_available(name):
    """True when the named SHA-256 implementation ("portable", "sha-ni", "armv8") can run here."""
    if not isinstance(name, str):
        raise TypeError(f"implementation name must be str, not {type(name).__name__!r}")
    if "\0" in name:
        return False
    cname = (<str>name).encode("utf-8")
    return pe_sha256_available(cname) != 0


# ---------------------------------------------------------------- pins

ctypedef struct pe_pin:
    int kind           # _KIND_SPKI or _KIND_CERT
    int alg            # pe_hash id
    int slot           # kind * 4 + algorithm index: the per-certificate digest cache entry
    int positions      # 1..7
    size_t dlen
    uint8_t digest[PE_MAX_DIGEST]


cdef class PinSet:
    """An immutable set of pins, held in C arrays: safe to share between threads.

    ``PinSet(pins)`` where each pin is ``(kind, algorithm, digest, positions)``:
    kind KIND_SPKI or KIND_CERT, algorithm one of ALGORITHMS, digest bytes of
    that algorithm's size, positions an int in 1..7 (POS_* bits).
    """

    cdef pe_pin *pins
    cdef Py_ssize_t n

    def __cinit__(self, pins):
        # Everything happens here, not in __init__: __cinit__ runs exactly once,
        # so a PinSet can never change after construction.
        cdef Py_ssize_t j
        cdef pe_pin *p
        cdef Py_buffer view
        cdef int index = 0
        if isinstance(pins, _NOT_A_SEQUENCE):
            raise TypeError(f"pins must be a sequence of (kind, algorithm, digest, positions), not {type(pins).__name__!r}")
        items = tuple(pins)
        self.n = len(items)
        self.pins = <pe_pin *>PyMem_RawMalloc(<size_t>(self.n if self.n > 0 else 1) * sizeof(pe_pin))
        if self.pins == NULL:
            raise MemoryError()
        for j in range(self.n):
            pin = items[j]
            p = &self.pins[j]
            memset(p, 0, sizeof(pe_pin))
            if not isinstance(pin, (tuple, list)):
                raise TypeError(
                    f"pin {j}: expected a (kind, algorithm, digest, positions) tuple, not {type(pin).__name__!r}"
                )
            if len(pin) != 4:
                raise ValueError(f"pin {j}: expected (kind, algorithm, digest, positions), got {len(pin)} items")
            kind, algorithm, digest, positions = pin
            if isinstance(kind, bool) or not isinstance(kind, int):
                raise TypeError(f"pin {j}: kind must be an int, not {type(kind).__name__!r}")
            if kind != KIND_SPKI and kind != KIND_CERT:
                raise ValueError(f"pin {j}: unknown kind {kind!r}: expected {KIND_SPKI} (SPKI) or {KIND_CERT} (certificate)")
            if not isinstance(algorithm, str):
                raise TypeError(f"pin {j}: algorithm must be a str, not {type(algorithm).__name__!r}")
            if algorithm not in _ALG_IDS:
                raise ValueError(f"pin {j}: unknown algorithm {algorithm!r}: expected one of {', '.join(ALGORITHMS)}")
            p.alg = _alg(algorithm, &index)
            p.kind = _KIND_SPKI if kind == KIND_SPKI else _KIND_CERT
            p.slot = p.kind * 4 + index
            if not PyObject_CheckBuffer(digest):
                raise TypeError(f"pin {j}: digest must be bytes, not {type(digest).__name__!r}")
            _get_view(digest, &view)
            try:
                p.dlen = pe_hash_len(p.alg)
                if <size_t>view.len != p.dlen:
                    raise ValueError(
                        f"pin {j}: a {algorithm} digest is {p.dlen} bytes, not {view.len}"
                    )
                memcpy(p.digest, view.buf, p.dlen)
            finally:
                PyBuffer_Release(&view)
            if isinstance(positions, bool) or not isinstance(positions, int):
                raise TypeError(f"pin {j}: positions must be an int, not {type(positions).__name__!r}")
            if not (1 <= positions <= POS_ANY):
                raise ValueError(f"pin {j}: positions must be in 1..{POS_ANY}, not {positions!r}")
            p.positions = positions

    def __dealloc__(self):
        PyMem_RawFree(self.pins)
        self.pins = NULL

    def __len__(self):
        return self.n

    def __repr__(self):
        return f"<pinengine._core.PinSet of {self.n} pins>"


# ---------------------------------------------------------------- chain matching

ctypedef struct pe_ref:
    const uint8_t *buf
    size_t len

cdef enum:
    _JOB_OK = 0
    _JOB_PARSE = 1
    _JOB_EMPTY = 2
    _JOB_NOMEM = 3
    _JOB_HASH = 4

ctypedef struct pe_job:
    Py_ssize_t first         # its certificates (leaf first): refs[first:first + ncerts] of the pe_setup
    Py_ssize_t ncerts
    const pe_pin *pins
    Py_ssize_t npins
    int status               # _JOB_*
    int err_code             # pe_der error code of the certificate that failed to parse
    Py_ssize_t err_index     # and its index
    size_t err_off           # and the offset
    Py_ssize_t mfirst        # its (i, j) matches: pairs mfirst .. mfirst + nmatches - 1 of the pe_matches
    Py_ssize_t nmatches

# The (i, j) matches of every job of one call, one after the other (the jobs
# run in order): one growing PyMem_Raw* array instead of one per job.
ctypedef struct pe_matches:
    Py_ssize_t *pairs        # i, j, i, j, ...
    Py_ssize_t n             # pairs in use
    Py_ssize_t cap


cdef int _add_match(pe_matches *m, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    cdef Py_ssize_t newcap
    cdef Py_ssize_t *grown
    if m.n == m.cap:
        newcap = 64 if m.cap == 0 else m.cap * 2
        if <size_t>newcap > (<size_t>-1) // (2 * sizeof(Py_ssize_t)):
            return -1
        grown = <Py_ssize_t *>PyMem_RawRealloc(m.pairs, <size_t>newcap * 2 * sizeof(Py_ssize_t))
        if grown == NULL:
            return -1
        m.pairs = grown
        m.cap = newcap
    m.pairs[2 * m.n] = i
    m.pairs[2 * m.n + 1] = j
    m.n += 1
    return 0


cdef inline bint _same_digest(const uint8_t *a, const uint8_t *b, size_t n) noexcept nogil:
    # Constant sizes let the C compiler compare inline instead of calling memcmp.
    if n == 32:
        return memcmp(a, b, 32) == 0
    if n == 20:
        return memcmp(a, b, 20) == 0
    if n == 48:
        return memcmp(a, b, 48) == 0
    if n == 64:
        return memcmp(a, b, 64) == 0
    return memcmp(a, b, n) == 0


cdef void _run_job(pe_job *job, const pe_ref *refs, pe_matches *m, bint verified) noexcept nogil:
    """Walk every certificate of the job, hash what the pins need, record (i, j) matches in m.

    No Python API: runs with or without the GIL. Each (kind, algorithm)
    digest of a certificate is computed at most once, and only if a pin
    considered for that certificate's position needs it.
    """
    cdef Py_ssize_t i, j, n = job.ncerts
    cdef const pe_ref *certs = refs + job.first if n > 0 else NULL
    cdef pe_cert cert
    cdef size_t off = 0
    cdef int rc, pos
    cdef bint considered, spki256
    cdef unsigned int done
    cdef uint8_t digests[8][PE_MAX_DIGEST]
    cdef const pe_pin *pin
    cdef const uint8_t *data
    cdef size_t dlen

    job.status = _JOB_OK
    job.mfirst = m.n
    job.nmatches = 0
    if n == 0:
        job.status = _JOB_EMPTY
        return
    for i in range(n):
        # Every certificate of the chain is parsed (it must be well-formed);
        # only the leaf is considered for matching when not verified.
        considered = i == 0 or verified
        if i == 0:
            pos = _POS_LEAF
        elif i == n - 1:
            pos = _POS_ROOT
        else:
            pos = _POS_INTERMEDIATE
        # Does a pin considered here want the SPKI's SHA-256 (the usual pin)?
        # Then the walk and that digest go in one call (pe_der.h).
        spki256 = False
        if considered:
            for j in range(job.npins):
                if (job.pins[j].positions & pos) and job.pins[j].slot == _SLOT_SPKI_SHA256:
                    spki256 = True
                    break
        done = 0
        if spki256:
            rc = pe_der_parse_cert_spki_sha256(certs[i].buf, certs[i].len, &cert, digests[_SLOT_SPKI_SHA256], &off)
            done = 1u << _SLOT_SPKI_SHA256
        else:
            rc = pe_der_parse_cert(certs[i].buf, certs[i].len, &cert, &off)
        if rc != PE_DER_OK:
            job.status = _JOB_PARSE
            job.err_index = i
            job.err_code = rc
            job.err_off = off
            m.n = job.mfirst  # drop this job's matches
            return
        if not considered:
            continue
        for j in range(job.npins):
            pin = &job.pins[j]
            if not (pin.positions & pos):
                continue
            if not (done & (1u << pin.slot)):
                if pin.kind == _KIND_SPKI:
                    data = certs[i].buf + cert.spki_tlv.off
                    dlen = cert.spki_tlv.len
                else:
                    data = certs[i].buf
                    dlen = certs[i].len
                if pe_hash(pin.alg, data, dlen, digests[pin.slot]) != 0:
                    job.status = _JOB_HASH
                    m.n = job.mfirst
                    return
                done |= 1u << pin.slot
            if _same_digest(digests[pin.slot], pin.digest, pin.dlen):
                if _add_match(m, i, j) != 0:
                    job.status = _JOB_NOMEM
                    m.n = job.mfirst
                    return
    job.nmatches = m.n - job.mfirst


# Results are lists of (i, j) tuples. Tuples are immutable, so the common
# small pairs are built once here and shared by every result: a result list
# then costs one allocation (the list, which must be fresh: callers may change
# it), not one per match. Fewer new container objects also means fewer runs
# of the cyclic garbage collector while the GIL is held.
cdef enum:
    _PAIR_I = 8
    _PAIR_J = 64

# A C-level global (not reachable from Python, so it cannot be rebound) holds
# the tuples; _pair_cache borrows them. Neither changes after import.
cdef tuple _pairs = tuple([tuple([(i, j) for j in range(_PAIR_J)]) for i in range(_PAIR_I)])
cdef PyObject *_pair_cache[_PAIR_I][_PAIR_J]


cdef int _init_pairs() except -1:
    cdef Py_ssize_t i, j
    for i in range(_PAIR_I):
        row = _pairs[i]
        for j in range(_PAIR_J):
            _pair_cache[i][j] = PyTuple_GET_ITEM(row, j)
    return 0


_init_pairs()


cdef inline object _job_result(const pe_job *job, const pe_matches *m, bint untracked):
    """The job's list of (i, j), or a CertificateParseError instance; raises for internal failures.

    untracked: the new list is left out of the cyclic garbage collector's
    bookkeeping; the caller must hand it back (PyObject_GC_Track) before
    anything but itself can see the list.
    """
    cdef Py_ssize_t k, i, j
    cdef const Py_ssize_t *pairs
    cdef list out
    if job.status == _JOB_OK:
        out = PyList_New(job.nmatches)
        if untracked:
            PyObject_GC_UnTrack(<PyObject *>out)
        pairs = m.pairs + 2 * job.mfirst if job.nmatches > 0 else NULL
        for k in range(job.nmatches):
            i = pairs[2 * k]
            j = pairs[2 * k + 1]
            if i < _PAIR_I and j < _PAIR_J:
                pair = <object>_pair_cache[i][j]
            else:
                pair = (i, j)
            Py_INCREF(pair)  # PyList_SET_ITEM steals a reference
            PyList_SET_ITEM(out, k, pair)
        return out
    if job.status == _JOB_PARSE:
        return _cert_error(job.err_code, job.err_off, job.err_index)
    if job.status == _JOB_EMPTY:
        return CertificateParseError("empty chain")
    if job.status == _JOB_NOMEM:
        raise MemoryError()
    raise RuntimeError("pe_hash failed")


# ---- collecting the certificates of the jobs, under the GIL
#
# What the GIL-free part reads must stay alive and unchanged until it ends:
# the certificate bytes and the PinSets (immutable once built). Tuples and
# lists are not copied; instead, for each certificate one of:
#   - an exact bytes object reached only through immutable links from a
#     reference we hold (our list of jobs -> job tuple -> chain tuple ->
#     bytes): nothing to do, nobody can drop or change it;
#   - an exact bytes object reached through a list (another thread could
#     replace the element while the GIL is released): one strong reference;
#   - any other bytes-like object: a buffer (Py_buffer), which holds a
#     reference and keeps a bytearray from being resized.
# A list chain is indexed while the GIL is held, with a fresh bounds check on
# every step. On a free-threaded build no lock keeps another thread from
# changing the list meanwhile, so there it is copied first (one tuple per
# job, as for any sequence that is neither a tuple nor a list). All the rest
# lives in plain C memory: no Python object is created per job.

cdef extern from "Python.h":
    # The same macros as cpython.bytes declares, on a borrowed PyObject *:
    # no reference counting around each certificate of a tuple.
    bint _bytes_check_exact "PyBytes_CheckExact"(PyObject *o)
    char *_bytes_as_string "PyBytes_AS_STRING"(PyObject *o)
    Py_ssize_t _bytes_size "PyBytes_GET_SIZE"(PyObject *o)

ctypedef struct pe_setup:
    pe_ref *refs             # every certificate of every job, in order
    Py_ssize_t nrefs
    Py_ssize_t caprefs
    PyObject **keep          # strong references, dropped at the end
    Py_ssize_t nkeep
    Py_ssize_t capkeep
    Py_buffer **views        # acquired buffers (each its own allocation, never moved), released at the end
    Py_ssize_t nviews
    Py_ssize_t capviews


cdef int _grow(void **array, Py_ssize_t *cap, Py_ssize_t need, size_t size) except -1:
    """Grow a PyMem_Raw* array to hold at least need entries (doubling, 16 at least)."""
    cdef Py_ssize_t newcap = cap[0] * 2 if cap[0] > 0 else 16
    cdef void *p
    if newcap < need:
        newcap = need
    if newcap < 0 or <size_t>newcap > (<size_t>-1) // size:
        raise MemoryError()
    p = PyMem_RawRealloc(array[0], <size_t>newcap * size)
    if p == NULL:
        raise MemoryError()
    array[0] = p
    cap[0] = newcap
    return 0


cdef inline int _keep(pe_setup *s, object obj) except -1:
    if s.nkeep == s.capkeep:
        _grow(<void **>&s.keep, &s.capkeep, s.nkeep + 1, sizeof(PyObject *))
    Py_INCREF(obj)
    s.keep[s.nkeep] = <PyObject *>obj
    s.nkeep += 1
    return 0


cdef int _add_cert(pe_setup *s, object cert, bint pinned, Py_ssize_t index, Py_ssize_t job) except -1:
    """Append cert's bytes to s.refs; pinned: an exact bytes object there cannot change or go away."""
    cdef Py_buffer *view
    cdef pe_ref *ref
    if s.nrefs == s.caprefs:
        _grow(<void **>&s.refs, &s.caprefs, s.nrefs + 1, sizeof(pe_ref))
    ref = &s.refs[s.nrefs]
    if PyBytes_CheckExact(cert):
        if not pinned:
            _keep(s, cert)
        ref.buf = <const uint8_t *>PyBytes_AS_STRING(cert)
        ref.len = <size_t>PyBytes_GET_SIZE(cert)
    else:
        if not PyObject_CheckBuffer(cert):
            where = f"certificate {index}" if job < 0 else f"job {job}: certificate {index}"
            raise TypeError(f"{where}: a bytes-like object is required, not {type(cert).__name__!r}")
        if s.nviews == s.capviews:
            _grow(<void **>&s.views, &s.capviews, s.nviews + 1, sizeof(Py_buffer *))
        view = <Py_buffer *>PyMem_RawMalloc(sizeof(Py_buffer))
        if view == NULL:
            raise MemoryError()
        try:
            _get_view(cert, view)
        except BaseException:
            PyMem_RawFree(view)
            raise
        s.views[s.nviews] = view
        s.nviews += 1
        ref.buf = <const uint8_t *>view.buf
        ref.len = <size_t>view.len
    s.nrefs += 1
    return 0


cdef Py_ssize_t _add_chain(pe_setup *s, object chain, bint pinned, Py_ssize_t job) except -1:
    """Append the certificates of chain (leaf first) to s.refs; returns how many.

    pinned: something we hold keeps chain itself alive (our list of jobs, a
    job tuple, or our caller's reference for the whole call).
    """
    cdef Py_ssize_t c, n
    cdef PyObject *item
    cdef pe_ref *ref
    if type(chain) is tuple:
        if not pinned:
            _keep(s, chain)  # its elements then stay put too
    elif type(chain) is list and not PE_GIL_DISABLED:
        # Our caller's reference keeps the list alive while we read it here.
        c = 0
        while c < PyList_GET_SIZE(chain):  # re-read: never index past the end
            _add_cert(s, <object>PyList_GET_ITEM(chain, c), False, c, job)
            c += 1
        return c
    elif isinstance(chain, _NOT_A_SEQUENCE):
        where = "chain" if job < 0 else f"job {job}: chain"
        raise TypeError(f"{where} must be a sequence of certificates, not {type(chain).__name__!r}")
    else:
        # Any other sequence (and a list on a free-threaded build): our own
        # tuple of its elements, held until the end.
        chain = tuple(chain)
        _keep(s, chain)
    n = PyTuple_GET_SIZE(chain)
    if n > s.caprefs - s.nrefs:
        _grow(<void **>&s.refs, &s.caprefs, s.nrefs + n, sizeof(pe_ref))
    for c in range(n):
        item = PyTuple_GET_ITEM(chain, c)
        if _bytes_check_exact(item):  # the common case, inline
            ref = &s.refs[s.nrefs]
            ref.buf = <const uint8_t *>_bytes_as_string(item)
            ref.len = <size_t>_bytes_size(item)
            s.nrefs += 1
        else:
            _add_cert(s, <object>item, True, c, job)
    return n


cdef void _clear_setup(pe_setup *s) noexcept:
    """Release the buffers and references s holds and forget its certificates; keep its arrays."""
    cdef Py_ssize_t k
    for k in range(s.nviews):
        PyBuffer_Release(s.views[k])
        PyMem_RawFree(s.views[k])
    s.nviews = 0
    for k in range(s.nkeep):
        Py_DECREF(<object>s.keep[k])
    s.nkeep = 0
    s.nrefs = 0


cdef void _release_setup(pe_setup *s) noexcept:
    _clear_setup(s)
    PyMem_RawFree(s.views)
    PyMem_RawFree(s.keep)
    PyMem_RawFree(s.refs)
    memset(s, 0, sizeof(pe_setup))


cdef void *_alloc_array(Py_ssize_t count, size_t size) except NULL:
    cdef void *p
    if count < 0 or <size_t>count > (<size_t>-1) // size:
        raise MemoryError()
    p = PyMem_RawMalloc(<size_t>(count if count > 0 else 1) * size)
    if p == NULL:
        raise MemoryError()
    return p


cdef int _match_one(pe_setup *s, pe_matches *m, pe_job *job, object chain, PinSet pinset, bint verified) except -1:
    """Match one chain (held by the caller for the whole call) into job and m.

    Raises CertificateParseError for an empty or malformed chain (and
    whatever _add_chain / _job_result raise); the caller releases s and m.
    """
    job.ncerts = _add_chain(s, chain, True, -1)
    if job.ncerts == 0:
        raise CertificateParseError("empty chain")
    job.pins = pinset.pins
    job.npins = pinset.n
    _run_job(job, s.refs, m, verified)
    if job.status != _JOB_OK:
        raise _job_result(job, m, False)
    return 0


def match_chain(chain, PinSet pinset not None, bint verified=True):
    """(i, j) for every considered certificate i of chain (leaf first) matching pin j of pinset."""
    cdef pe_setup s
    cdef pe_matches m
    cdef pe_job job
    memset(&s, 0, sizeof(s))
    memset(&m, 0, sizeof(m))
    memset(&job, 0, sizeof(job))
    try:
        _match_one(&s, &m, &job, chain, pinset, verified)
        return _job_result(&job, &m, False)
    finally:
        PyMem_RawFree(m.pairs)
        _release_setup(&s)


# match_chains takes its jobs in turns of this many: the set-up and the
# results of a turn hold the GIL, the work does not. Short GIL-held stretches
# let the threads calling match_chains at once interleave them with each
# other's work, instead of one waiting for all of the other's set-up first.
cdef enum:
    _TURN = 256


def match_chains(jobs, bint verified=True):
    """match_chain for many (chain, PinSet) jobs, with the GIL released while working.

    A job whose chain does not parse gives a CertificateParseError instance in
    its place; wrong types raise TypeError.
    """
    cdef list job_list
    cdef list results
    cdef Py_ssize_t njobs, base, count, k
    cdef pe_setup s
    cdef pe_matches m
    cdef pe_job *work = NULL
    cdef PinSet ps
    cdef bint pinned
    cdef PyObject *p

    if isinstance(jobs, _NOT_A_SEQUENCE):
        raise TypeError(f"jobs must be a sequence of (chain, PinSet) pairs, not {type(jobs).__name__!r}")
    job_list = list(jobs)  # ours: it keeps every job alive until we return
    # Nobody else ever sees job_list, so it cannot be part of a reference
    # cycle: keep it out of the cyclic garbage collector's bookkeeping, or
    # every collection that our allocations trigger would traverse it.
    PyObject_GC_UnTrack(<PyObject *>job_list)
    njobs = len(job_list)

    # One fresh list per job (callers may change them). Their allocations
    # trigger the cyclic garbage collector every few hundred lists; kept out
    # of its bookkeeping until all are built, the results (the outer list and
    # the new ones) are not traversed again and again by those collections,
    # nor promoted to older generations on the way, which would bring full
    # collections sooner. Nothing in them can be garbage meanwhile: they hold
    # shared tuples of ints and error instances, and only this function can
    # see them.
    results = PyList_New(njobs)
    PyObject_GC_UnTrack(<PyObject *>results)
    memset(&s, 0, sizeof(s))
    memset(&m, 0, sizeof(m))
    try:
        count = njobs if njobs < _TURN else _TURN
        work = <pe_job *>_alloc_array(count, sizeof(pe_job))
        _grow(<void **>&s.refs, &s.caprefs, 3 * count, sizeof(pe_ref))  # three certificates a job, to start with
        for base in range(0, njobs, _TURN):
            count = njobs - base if njobs - base < _TURN else _TURN

            # Under the GIL: check types, find every certificate's bytes, and
            # make sure they (and the PinSets) outlive the GIL-free part.
            for k in range(count):
                job = job_list[base + k]
                if type(job) is tuple and PyTuple_GET_SIZE(job) == 2:
                    # immutable and held by job_list: its chain and PinSet stay put
                    chain = <object>PyTuple_GET_ITEM(job, 0)
                    pinset = <object>PyTuple_GET_ITEM(job, 1)
                    pinned = True
                elif isinstance(job, (tuple, list)) and len(job) == 2:
                    chain, pinset = job
                    pinned = False
                else:
                    raise TypeError(f"job {base + k}: expected a (chain, PinSet) pair, not {type(job).__name__!r}")
                if not isinstance(pinset, PinSet):
                    raise TypeError(
                        f"job {base + k}: expected a pinengine._core.PinSet, not {type(pinset).__name__!r}"
                    )
                ps = <PinSet>pinset
                if not pinned:
                    _keep(&s, ps)
                work[k].first = s.nrefs
                work[k].ncerts = _add_chain(&s, chain, pinned, base + k)
                work[k].pins = ps.pins
                work[k].npins = ps.n

            # Without the GIL: only C memory that the references above keep alive.
            m.n = 0
            with nogil:
                for k in range(count):
                    _run_job(&work[k], s.refs, &m, verified)

            for k in range(count):
                item = _job_result(&work[k], &m, True)
                Py_INCREF(item)  # PyList_SET_ITEM steals a reference
                PyList_SET_ITEM(results, base + k, item)
            _clear_setup(&s)
        return results
    finally:
        # The results are tracked again before anyone else can see them
        # (PyList_New left the slots not filled yet NULL).
        for k in range(njobs):
            p = PyList_GET_ITEM(results, k)
            if p != NULL and type(<object>p) is list:
                PyObject_GC_Track(p)
        PyObject_GC_Track(<PyObject *>results)
        PyMem_RawFree(m.pairs)
        PyMem_RawFree(work)
        _release_setup(&s)


# ---------------------------------------------------------------- tallies

cdef enum:
    _TALLY_INLINE = 16  # buckets held in a Tally itself: the default 15 bounds and the one above


cdef extern from "pe_tally.h":
    void pe_tally_add(uint64_t *p, uint64_t v) noexcept nogil
    uint64_t pe_now_ns() noexcept nogil


@cython.no_gc  # its one object field is a tuple of floats: no cycle can go through it
cdef class Tally:
    """The count of one metrics key's remembered decisions, and their latencies.

    ``Tally(bounds)``: bounds a tuple of floats, the ascending upper bounds
    (seconds) of the latency buckets, one more bucket holding what is above
    the last.
    ``recall_outcome(s)`` add to it in C; ``read()`` gives ``(count, buckets,
    seconds)``, the buckets not cumulative and the seconds their sum.

    A metrics registry holds one per key (tens of thousands in a large
    policy), so it is small: the bounds tuple is kept, not copied (one for
    all the tallies of a registry), and up to
    _TALLY_INLINE buckets live in the object itself.
    """

    cdef uint64_t count
    cdef uint64_t nanos
    cdef uint64_t *buckets
    cdef uint64_t inline_buckets[_TALLY_INLINE]
    cdef tuple bounds
    cdef Py_ssize_t nbounds

    def __cinit__(self, tuple bounds not None):
        cdef Py_ssize_t i
        for i in range(PyTuple_GET_SIZE(bounds)):
            if type(<object>PyTuple_GET_ITEM(bounds, i)) is not float:
                raise TypeError("bounds must be a tuple of floats")
            if i > 0 and PyFloat_AS_DOUBLE(<object>PyTuple_GET_ITEM(bounds, i)) < PyFloat_AS_DOUBLE(
                <object>PyTuple_GET_ITEM(bounds, i - 1)
            ):
                raise ValueError("bounds must be ascending")
        self.bounds = bounds
        self.nbounds = len(bounds)
        if self.nbounds + 1 <= _TALLY_INLINE:
            self.buckets = self.inline_buckets
        else:
            self.buckets = <uint64_t *>_alloc_array(self.nbounds + 1, sizeof(uint64_t))
        memset(self.buckets, 0, <size_t>(self.nbounds + 1) * sizeof(uint64_t))

    def __dealloc__(self):
        if self.buckets != self.inline_buckets:
            PyMem_RawFree(self.buckets)
        self.buckets = NULL

    def add(self, double seconds):
        """Count a decision that took ``seconds``."""
        _tally(self, seconds)

    def read(self):
        """``(count, buckets, seconds)``: what was counted since it was made or cleared."""
        return (
            self.count,
            [self.buckets[i] for i in range(self.nbounds + 1)],
            self.nanos / 1e9,
        )

    def clear(self):
        """Forget every count (adds made by other threads at that moment may be lost)."""
        self.count = 0
        self.nanos = 0
        memset(self.buckets, 0, <size_t>(self.nbounds + 1) * sizeof(uint64_t))

    def __repr__(self):
        return f"<pinengine._core.Tally of {self.count} decisions>"


cdef inline void _tally(Tally t, double seconds) noexcept:
    # The bucket is the first bound >= seconds (Prometheus "le"), else the last one.
    cdef Py_ssize_t i = 0
    if not (seconds >= 0.0):  # NaN, or a clock that went back
        seconds = 0.0
    elif seconds > 1e6:  # (no overflow of the nanosecond sum)
        seconds = 1e6
    while i < t.nbounds and seconds > PyFloat_AS_DOUBLE(<object>PyTuple_GET_ITEM(t.bounds, i)):
        i += 1
    pe_tally_add(&t.count, 1)
    pe_tally_add(&t.buckets[i], 1)
    pe_tally_add(&t.nanos, <uint64_t>(seconds * 1e9 + 0.5))


# ---------------------------------------------------------------- remembered outcomes
#
# A policy remembers, per host name, the result each way a chain can match
# (PinPolicy.verify). The key of a remembered result is an exact code of that
# way: the verified flag, the chain length and every (i, j) match in order, in
# fixed-width fields (CORE_SPEC section 2.2). Two different outcomes never
# share a code; an outcome too big for the fields has none (-1) and is always
# decided in Python. The code is computed here, in C, so that a known host's
# decision needs no Python object per match.

cdef enum:
    _CODE_MAX_CERTS = 64     # chain length: 6 bits
    _CODE_MAX_MATCHES = 5    # match count: 3 bits; 5 matches of 9 bits each
    _CODE_MAX_I = 8          # certificate index: 3 bits
    _CODE_MAX_J = 64         # pin index: 6 bits


cdef long long _outcome_code(const pe_job *job, const pe_matches *m, bint verified) noexcept nogil:
    cdef unsigned long long code
    cdef Py_ssize_t k, i, j
    cdef const Py_ssize_t *pairs
    if job.status != _JOB_OK or job.ncerts >= _CODE_MAX_CERTS or job.nmatches > _CODE_MAX_MATCHES:
        return -1
    code = (<unsigned long long>(1 if verified else 0)) | (<unsigned long long>job.ncerts << 1) \
        | (<unsigned long long>job.nmatches << 7)
    pairs = m.pairs + 2 * job.mfirst if job.nmatches > 0 else NULL
    for k in range(job.nmatches):
        i = pairs[2 * k]
        j = pairs[2 * k + 1]
        if i >= _CODE_MAX_I or j >= _CODE_MAX_J:
            return -1
        code |= (<unsigned long long>((i << 6) | j)) << (10 + 9 * k)
    return <long long>code


def outcome_code(chain, PinSet pinset not None, bint verified=True):
    """The code of how chain matches pinset (every certificate matched, as match_chain(..., True)), or -1.

    Raises as match_chain does (CertificateParseError, TypeError).
    """
    cdef pe_setup s
    cdef pe_matches m
    cdef pe_job job
    memset(&s, 0, sizeof(s))
    memset(&m, 0, sizeof(m))
    memset(&job, 0, sizeof(job))
    try:
        _match_one(&s, &m, &job, chain, pinset, True)
        return _outcome_code(&job, &m, verified)
    finally:
        PyMem_RawFree(m.pairs)
        _release_setup(&s)


cdef extern from "pe_dict.h":
    PyObject *pe_dict_get_ref(object d, object key) except? NULL


cdef inline object _dict_get(object d, object key):
    """d[key] as a strong reference, or None when absent (see pe_dict.h)."""
    cdef PyObject *p = pe_dict_get_ref(d, key)
    if p == NULL:
        return None
    value = <object>p  # one more reference: drop the lookup's own
    Py_DECREF(value)
    return value


cdef inline object _plan_of(dict plans, object host, bint skip_unpinned):
    """The plan of host when its outcomes are remembered, else None."""
    if type(host) is not str:
        return None
    plan = _dict_get(plans, host)
    if type(plan) is not tuple or PyTuple_GET_SIZE(plan) != 4:
        return None
    if type(<object>PyTuple_GET_ITEM(plan, 3)) is not dict:
        return None  # outcomes not remembered for this host
    if not isinstance(<object>PyTuple_GET_ITEM(plan, 2), PinSet):
        return None
    if skip_unpinned and <object>PyTuple_GET_ITEM(plan, 1) is None:
        return None
    return plan


cdef inline object _recalled(object plan, long long code, double seconds):
    """The remembered result of plan for code, counted in its Tally as taking seconds; or None."""
    if code < 0:
        return None
    known = _dict_get(<object>PyTuple_GET_ITEM(plan, 3), code)
    if type(known) is not tuple or PyTuple_GET_SIZE(known) != 2:
        return None
    tally = <object>PyTuple_GET_ITEM(known, 1)
    if type(tally) is not Tally:
        return None
    _tally(<Tally>tally, seconds)
    return <object>PyTuple_GET_ITEM(known, 0)


def recall_outcome(dict plans not None, host, chain, bint verified=True, bint skip_unpinned=False):
    """recall_outcomes for one item: the remembered result of host for chain (counted), or None."""
    cdef pe_setup s
    cdef pe_matches m
    cdef pe_job job
    cdef uint64_t started = pe_now_ns()
    cdef long long code
    held = _plan_of(plans, host, skip_unpinned)  # ours until we return, whatever happens to plans
    if held is None:
        return None
    memset(&s, 0, sizeof(s))
    memset(&m, 0, sizeof(m))
    memset(&job, 0, sizeof(job))
    try:
        try:
            _match_one(&s, &m, &job, chain, <PinSet>PyTuple_GET_ITEM(held, 2), True)
        except CertificateParseError:
            return None  # decided (and reported) by the caller's own path
        code = _outcome_code(&job, &m, verified)
        return _recalled(held, code, (pe_now_ns() - started) / 1e9)
    finally:
        PyMem_RawFree(m.pairs)
        _release_setup(&s)


def recall_outcomes(items, dict plans not None, bint verified=True, bint skip_unpinned=False):
    """The remembered results of many (host, chain) items, matched with the GIL released.

    plans maps a host (str) to a plan tuple ``(name, entry, PinSet, outcomes)``
    where outcomes maps an outcome code to a ``(result, Tally)`` pair (or is
    None: nothing remembered). Returns ``(results, misses)``: results holds,
    in item order, each item's remembered result or None (a result found is
    counted in its Tally, with the time since the call began); misses the
    index of every item without one. An item that is not a (str, chain)
    tuple, or whose host has no plan (or an unpinned plan, with
    skip_unpinned), is a miss without being read further.
    """
    cdef list item_list
    cdef list results
    cdef list misses = []
    cdef uint64_t started = pe_now_ns()
    cdef Py_ssize_t nitems, base, count, k
    cdef pe_setup s
    cdef pe_matches m
    cdef pe_job *work = NULL
    cdef PyObject **planned = NULL
    cdef long long *codes = NULL
    cdef double seconds

    if isinstance(items, _NOT_A_SEQUENCE):
        raise TypeError(f"items must be a sequence of (host, chain) pairs, not {type(items).__name__!r}")
    item_list = list(items)  # ours: it keeps every item (and so each tuple's chain) alive
    nitems = len(item_list)
    results = [None] * nitems
    memset(&s, 0, sizeof(s))
    memset(&m, 0, sizeof(m))
    try:
        count = nitems if nitems < _TURN else _TURN
        work = <pe_job *>_alloc_array(count, sizeof(pe_job))
        planned = <PyObject **>_alloc_array(count, sizeof(PyObject *))
        codes = <long long *>_alloc_array(count, sizeof(long long))
        for base in range(0, nitems, _TURN):
            count = nitems - base if nitems - base < _TURN else _TURN
            # Under the GIL: each item's plan, held (another thread may drop
            # it from plans meanwhile), and its certificates' bytes.
            for k in range(count):
                item = item_list[base + k]
                if type(item) is not tuple or PyTuple_GET_SIZE(item) != 2:
                    planned[k] = NULL
                    continue
                plan = _plan_of(plans, <object>PyTuple_GET_ITEM(item, 0), skip_unpinned)
                if plan is None:
                    planned[k] = NULL
                    continue
                _keep(&s, plan)  # held until the end of the turn, whatever happens to plans
                planned[k] = <PyObject *>plan
                work[k].first = s.nrefs
                work[k].ncerts = _add_chain(&s, <object>PyTuple_GET_ITEM(item, 1), True, base + k)
                work[k].pins = (<PinSet>PyTuple_GET_ITEM(<object>planned[k], 2)).pins
                work[k].npins = (<PinSet>PyTuple_GET_ITEM(<object>planned[k], 2)).n

            m.n = 0
            with nogil:
                for k in range(count):
                    if planned[k] != NULL:
                        _run_job(&work[k], s.refs, &m, True)
                        codes[k] = _outcome_code(&work[k], &m, verified)
                # Every item of this turn is decided now: the time since the call began.
                seconds = (pe_now_ns() - started) / 1e9

            for k in range(count):
                if planned[k] == NULL:
                    misses.append(base + k)
                    continue
                known = _recalled(<object>planned[k], codes[k], seconds)
                if known is None:
                    misses.append(base + k)
                    continue
                results[base + k] = known
            _clear_setup(&s)
        return results, misses
    finally:
        PyMem_RawFree(m.pairs)
        PyMem_RawFree(work)
        PyMem_RawFree(planned)
        PyMem_RawFree(codes)
        _release_setup(&s)
