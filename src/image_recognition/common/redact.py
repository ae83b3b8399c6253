"""Credentials out of URLs, before a URL is logged or stored.

A data source may be a presigned link (``...?X-Amz-Credential=...&X-Amz-Signature=...``)
or carry a user and password (``https://user:secret@host/...``). The fetch uses
the URL as given; everything that records it (log lines, the archive and data
reports, metrics, checkpoints, the HTML report, MLflow) gets :func:`redact_url`'s
form instead, which keeps what says where the data came from (scheme, host,
port, path) and drops what would let someone else fetch it:

- the userinfo (``user:password@``), whatever the scheme;
- for http(s), the whole query and fragment: any parameter of a presigned or
  tokenised link may be the credential, and none of them names the data;
- for other schemes, every query parameter named like a credential
  (:data:`CREDENTIAL_PREFIXES`, :data:`CREDENTIAL_WORDS`) and the fragment, so
  the options of a ``synthetic://`` source stay.

Standard library only: the plain-PyTorch core and the Kedro hooks both use it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

# Query parameters whose name starts with one of these (lower case) are credentials:
# AWS and Google Cloud Storage presigned URLs sign with X-Amz-* and X-Goog-* parameters.
CREDENTIAL_PREFIXES = ("x-amz-", "x-goog-")
# ... and those whose name contains one of these: sig, signature, token, access_token,
# key, apikey, AWSAccessKeyId, secret, password, passwd, credential, auth, session.
CREDENTIAL_WORDS = ("sig", "token", "key", "secret", "pass", "credential", "auth", "session")
# Schemes whose whole query and fragment are dropped.
WHOLE_QUERY_SCHEMES = frozenset({"http", "https"})
# What an unparseable URL is shown as: it may hold anything.
UNPARSEABLE = "<unparseable URL, not shown>"
HIDDEN = "***"


def is_credential(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a credential."""
    name = name.strip().lower()
    return name.startswith(CREDENTIAL_PREFIXES) or any(word in name for word in CREDENTIAL_WORDS)


def redact_url(url: str) -> str:
    """``url`` without its credentials: what may be logged or stored (see the module's docstring).

    A string without ``://`` (a plain path) is returned as it is.
    """
    if "://" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return UNPARSEABLE
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme.lower() in WHOLE_QUERY_SCHEMES:
        query = ""
    else:
        query = "&".join(piece for piece in parts.query.split("&") if piece and not is_credential(_name(piece)))
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, query, ""))


def redact_urls(value: Any) -> Any:
    """``value`` (parameters: mappings, lists, strings) with every URL in it redacted; a new object, ``value`` untouched."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, Mapping):
        return {key: redact_urls(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_urls(item) for item in value)
    return value


def scrub(text: str, url: str) -> str:
    """``text`` (an error message about ``url``) with every credential of ``url`` replaced by ``***``.

    For messages written by others (urllib's, http.client's), which may quote
    the URL or a piece of it, such as the password of ``user:password@host``.
    """
    text = text.replace(url, redact_url(url))
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


def _name(piece: str) -> str:
    """The decoded name of one ``name=value`` piece of a query."""
    return urllib.parse.unquote_plus(piece.partition("=")[0])


def _secrets(url: str) -> set[str]:
    """The credentials in ``url``, raw and decoded: its userinfo, user and password, its
    fragment, an http(s) URL's whole query, and every credential parameter and value."""
    if "://" not in url:
        return set()
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return {url}
    userinfo = parts.netloc.rpartition("@")[0]
    found = {userinfo, *userinfo.split(":"), parts.fragment}
    if parts.scheme.lower() in WHOLE_QUERY_SCHEMES:
        found.add(parts.query)
    for piece in parts.query.split("&"):
        if is_credential(_name(piece)):
            value = piece.partition("=")[2]
            found |= {piece, value, urllib.parse.unquote_plus(value)}
    return {secret for secret in found if secret}
