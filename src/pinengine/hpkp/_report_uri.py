"""A header's ``report-uri``, resolved against the request URL (RFC 7469 §2.1.4)."""

from __future__ import annotations

import urllib.parse

from ._header import MAX_REPORT_URI_LENGTH

__all__ = ["absolute_report_uri"]


def absolute_report_uri(uri: str | None, url: str | None) -> str | None:
    """``report-uri`` resolved against the request URL; None unless it ends up an http(s) URL.

    Raises ValueError when the resolved URI is longer than MAX_REPORT_URI_LENGTH.
    """
    if not uri:
        return None
    if url:
        uri = urllib.parse.urljoin(url, uri)
    if len(uri) > MAX_REPORT_URI_LENGTH:
        raise ValueError(
            f"report-uri resolved against the request URL is longer than {MAX_REPORT_URI_LENGTH} characters "
            "(MAX_REPORT_URI_LENGTH)"
        )
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    return uri if scheme in ("http", "https") and urllib.parse.urlsplit(uri).netloc else None

