# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled core of pinengine: strict DER walking, digests and pin matching.

The contract is ext/CORE_SPEC.md; ``pinengine._core_py`` is the pure-Python
twin with the same API and the same decisions. The certificate walker is
ext/der.c, the digests ext/sha*.c (ext/pe_hash.h); this module adds argument
checking, error messages and the chain matcher, which runs without the GIL
in ``match_chains``.
"""

import os as _os

from libc.stdint cimport uint8_t
from libc.string cimport memcmp, memcpy, memset
from cpython.buffer cimport PyObject_CheckBuffer, PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawRealloc, PyMem_RawFree

from pinengine._errors import CertificateParseError
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
    "cert_digest",
    "cert_sha256",
    "extract_spki",
    "hash_bytes",
    "match_chain",
    "match_chains",
    "parse_certificate",
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


cdef int _get_cert_view(object obj, Py_buffer *view, Py_ssize_t index, Py_ssize_t job) except -1:
    """_get_view for a chain element, naming it in the TypeError."""
    if not PyObject_CheckBuffer(obj):
        where = f"certificate {index}" if job < 0 else f"job {job}: certificate {index}"
        raise TypeError(f"{where}: a bytes-like object is required, not {type(obj).__name__!r}")
    return _get_view(obj, view)


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
    cdef pe_cert cert
    _get_view(der, &view)
    try:
        _parse_view(&view, &cert)
        if spki:
            return _digest_of(alg, <const uint8_t *>view.buf + cert.spki_tlv.off, cert.spki_tlv.len)
        return _digest_of(alg, <const uint8_t *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)


# ---------------------------------------------------------------- digests and parsing

def hash_bytes(data, algorithm):
    """Digest of data (any bytes-like object) with algorithm ("sha1", "sha256", "sha384", "sha512")."""
    cdef int alg = _alg(algorithm)
    cdef Py_buffer view
    _get_view(data, &view)
    try:
        return _digest_of(alg, <const uint8_t *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)


def spki_sha256(der):
    """SHA-256 of the certificate's subjectPublicKeyInfo TLV, exactly as encoded."""
    return _cert_digest(der, PE_SHA256, True)


def cert_sha256(der):
    """SHA-256 of the whole certificate, which must be well-formed."""
    return _cert_digest(der, PE_SHA256, False)


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
    const pe_ref *certs      # this job's certificates, leaf first
    Py_ssize_t ncerts
    const pe_pin *pins
    Py_ssize_t npins
    int verified
    int status               # _JOB_*
    Py_ssize_t err_index     # certificate that failed to parse
    int err_code             # its pe_der error code
    size_t err_off           # and offset
    Py_ssize_t *matches      # (i, j) pairs, flattened; PyMem_Raw* memory
    Py_ssize_t nmatches
    Py_ssize_t cap


cdef int _add_match(pe_job *job, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    cdef Py_ssize_t newcap
    cdef Py_ssize_t *grown
    if job.nmatches == job.cap:
        newcap = 8 if job.cap == 0 else job.cap * 2
        if <size_t>newcap > (<size_t>-1) // (2 * sizeof(Py_ssize_t)):
            return -1
        grown = <Py_ssize_t *>PyMem_RawRealloc(job.matches, <size_t>newcap * 2 * sizeof(Py_ssize_t))
        if grown == NULL:
            return -1
        job.matches = grown
        job.cap = newcap
    job.matches[2 * job.nmatches] = i
    job.matches[2 * job.nmatches + 1] = j
    job.nmatches += 1
    return 0


cdef void _run_job(pe_job *job) noexcept nogil:
    """Walk every certificate of the job, hash what the pins need, record (i, j) matches.

    No Python API: runs with or without the GIL. Each (kind, algorithm)
    digest of a certificate is computed at most once, and only if a pin
    considered for that certificate's position needs it.
    """
    cdef Py_ssize_t i, j, n = job.ncerts
    cdef pe_cert cert
    cdef size_t off = 0
    cdef int rc, pos
    cdef unsigned int done
    cdef uint8_t digests[8][PE_MAX_DIGEST]
    cdef const pe_pin *pin
    cdef const uint8_t *data
    cdef size_t dlen

    job.status = _JOB_OK
    job.nmatches = 0
    if n == 0:
        job.status = _JOB_EMPTY
        return
    for i in range(n):
        rc = pe_der_parse_cert(job.certs[i].buf, job.certs[i].len, &cert, &off)
        if rc != PE_DER_OK:
            job.status = _JOB_PARSE
            job.err_index = i
            job.err_code = rc
            job.err_off = off
            job.nmatches = 0
            return
        if i != 0 and not job.verified:
            continue  # still parsed: every certificate of the chain must be well-formed
        if i == 0:
            pos = _POS_LEAF
        elif i == n - 1:
            pos = _POS_ROOT
        else:
            pos = _POS_INTERMEDIATE
        done = 0
        for j in range(job.npins):
            pin = &job.pins[j]
            if not (pin.positions & pos):
                continue
            if not (done & (1u << pin.slot)):
                if pin.kind == _KIND_SPKI:
                    data = job.certs[i].buf + cert.spki_tlv.off
                    dlen = cert.spki_tlv.len
                else:
                    data = job.certs[i].buf
                    dlen = job.certs[i].len
                if pe_hash(pin.alg, data, dlen, digests[pin.slot]) != 0:
                    job.status = _JOB_HASH
                    job.nmatches = 0
                    return
                done |= 1u << pin.slot
            if memcmp(digests[pin.slot], pin.digest, pin.dlen) == 0:
                if _add_match(job, i, j) != 0:
                    job.status = _JOB_NOMEM
                    job.nmatches = 0
                    return


cdef object _job_result(pe_job *job):
    """The job's list of (i, j), or a CertificateParseError instance; raises for internal failures."""
    cdef Py_ssize_t k
    if job.status == _JOB_OK:
        return [(job.matches[2 * k], job.matches[2 * k + 1]) for k in range(job.nmatches)]
    if job.status == _JOB_PARSE:
        return _cert_error(job.err_code, job.err_off, job.err_index)
    if job.status == _JOB_EMPTY:
        return CertificateParseError("empty chain")
    if job.status == _JOB_NOMEM:
        raise MemoryError()
    raise RuntimeError("pe_hash failed")


cdef void *_alloc_array(Py_ssize_t count, size_t size) except NULL:
    cdef void *p
    if count < 0 or <size_t>count > (<size_t>-1) // size:
        raise MemoryError()
    p = PyMem_RawMalloc(<size_t>(count if count > 0 else 1) * size)
    if p == NULL:
        raise MemoryError()
    return p


cdef list _chain_list(object chain, Py_ssize_t job):
    """Our own list of the chain's elements (so nobody can change it under us)."""
    if isinstance(chain, _NOT_A_SEQUENCE):
        where = "chain" if job < 0 else f"job {job}: chain"
        raise TypeError(f"{where} must be a sequence of certificates, not {type(chain).__name__!r}")
    return list(chain)


def match_chain(chain, PinSet pinset not None, bint verified=True):
    """(i, j) for every considered certificate i of chain (leaf first) matching pin j of pinset."""
    cdef list certs = _chain_list(chain, -1)
    cdef Py_ssize_t n = len(certs), k, acquired = 0
    cdef Py_buffer *views = NULL
    cdef pe_ref *refs = NULL
    cdef pe_job job
    if n == 0:
        raise CertificateParseError("empty chain")
    memset(&job, 0, sizeof(job))
    try:
        views = <Py_buffer *>_alloc_array(n, sizeof(Py_buffer))
        refs = <pe_ref *>_alloc_array(n, sizeof(pe_ref))
        for k in range(n):
            _get_cert_view(certs[k], &views[k], k, -1)
            acquired += 1
            refs[k].buf = <const uint8_t *>views[k].buf
            refs[k].len = <size_t>views[k].len
        job.certs = refs
        job.ncerts = n
        job.pins = pinset.pins
        job.npins = pinset.n
        job.verified = verified
        _run_job(&job)
        result = _job_result(&job)
        if job.status != _JOB_OK:
            raise result
        return result
    finally:
        for k in range(acquired):
            PyBuffer_Release(&views[k])
        PyMem_RawFree(job.matches)
        PyMem_RawFree(refs)
        PyMem_RawFree(views)


def match_chains(jobs, bint verified=True):
    """match_chain for many (chain, PinSet) jobs, with the GIL released while working.

    A job whose chain does not parse gives a CertificateParseError instance in
    its place; wrong types raise TypeError.
    """
    cdef list job_list
    cdef Py_ssize_t njobs, total = 0, k, c, idx, acquired = 0
    cdef list chains = []
    cdef list pinsets = []
    cdef list certs
    cdef PinSet ps
    cdef Py_buffer *views = NULL
    cdef pe_ref *refs = NULL
    cdef pe_job *work = NULL

    if isinstance(jobs, _NOT_A_SEQUENCE):
        raise TypeError(f"jobs must be a sequence of (chain, PinSet) pairs, not {type(jobs).__name__!r}")
    job_list = list(jobs)
    njobs = len(job_list)

    # Under the GIL: check types and take our own references to everything.
    for k in range(njobs):
        job = job_list[k]
        if not isinstance(job, (tuple, list)) or len(job) != 2:
            raise TypeError(f"job {k}: expected a (chain, PinSet) pair, not {type(job).__name__!r}")
        chain, pinset = job
        if not isinstance(pinset, PinSet):
            raise TypeError(f"job {k}: expected a pinengine._core.PinSet, not {type(pinset).__name__!r}")
        certs = _chain_list(chain, k)
        chains.append(certs)
        pinsets.append(pinset)
        total += len(certs)

    try:
        work = <pe_job *>_alloc_array(njobs, sizeof(pe_job))
        memset(work, 0, <size_t>(njobs if njobs > 0 else 1) * sizeof(pe_job))
        views = <Py_buffer *>_alloc_array(total, sizeof(Py_buffer))
        refs = <pe_ref *>_alloc_array(total, sizeof(pe_ref))
        idx = 0
        for k in range(njobs):
            certs = chains[k]
            ps = pinsets[k]
            work[k].certs = refs + idx
            work[k].ncerts = len(certs)
            work[k].pins = ps.pins
            work[k].npins = ps.n
            work[k].verified = verified
            for c in range(len(certs)):
                _get_cert_view(certs[c], &views[idx], c, k)
                acquired += 1
                refs[idx].buf = <const uint8_t *>views[idx].buf
                refs[idx].len = <size_t>views[idx].len
                idx += 1

        # Without the GIL: only C memory that the references above keep alive
        # (PinSets are immutable; the Py_buffer views pin the certificate bytes).
        with nogil:
            for k in range(njobs):
                _run_job(&work[k])

        return [_job_result(&work[k]) for k in range(njobs)]
    finally:
        for k in range(acquired):
            PyBuffer_Release(&views[k])
        if work != NULL:
            for k in range(njobs):
                PyMem_RawFree(work[k].matches)
        PyMem_RawFree(work)
        PyMem_RawFree(refs)
        PyMem_RawFree(views)
