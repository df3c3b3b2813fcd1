"""Secrets out of URLs and text before they are logged or put in an error.

`redacted_url` is the one helper for every URL a log line, an error or a settings repr shows
(`REDIS_URL`, `OPENAI_BASE_URL`, preflight lines): the password of the userinfo, a userinfo that is
only a name (often a token), and the value of every query parameter whose name says it holds a
secret (`password`, `token`, `api_key`, `secret`, `auth`, `signature`...) become `***`.
`redacted_text` does the same for every URL inside free text (exception messages). Plain Python,
no imports from the rest of the project, so the settings can use it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|sig|cred", re.IGNORECASE)
"""Query parameter names (and config keys) that hold secrets: `password`, `api-key`, `sig`..."""

_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or configuration key named `name` holds a secret."""
    return bool(_SECRET_NAME.search(name))


def redacted_url(url: str) -> str:
    """`url` without the secrets it carries; a URL that cannot be parsed is masked whole."""
    try:
        parts = urlsplit(url)
        netloc = _redacted_netloc(parts.netloc)
        query = _redacted_query(parts.query)
    except ValueError:
        return MASK
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redacted_text(text: str) -> str:
    """`text` with every URL in it redacted (`redacted_url`)."""
    return _URL_IN_TEXT.sub(lambda m: redacted_url(m.group(0)), text)


def _redacted_netloc(netloc: str) -> str:
    if "@" not in netloc:
        return netloc
    userinfo, host = netloc.rsplit("@", 1)
    if ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        return f"{user}:{MASK}@{host}"
    return f"{MASK}@{host}"  # a name alone is often a token (https://TOKEN@host)


def _redacted_query(query: str) -> str:
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(is_secret_name(name) for name, _ in pairs):
        return query
    kept = [(name, MASK if is_secret_name(name) else value) for name, value in pairs]
    return urlencode(kept, safe="*")
