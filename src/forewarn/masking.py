"""What counts as a secret, and how a URL's secrets are hidden: the bottom of forewarn's redaction.

:data:`DEFAULT_REDACT_PATTERNS` are the regular expressions a recorded message is scrubbed with by
default, :data:`MASK` is what a secret becomes, and :func:`mask_url` hides the password and secret query
parameters of a URL. Settings (which shows URLs in its errors) and :mod:`forewarn.redaction` (which
applies the patterns) both build on this module, so neither has to import the other.

Example::

    >>> mask_url("postgresql+psycopg://forewarn:s3cret@db:5432/telemetry")
    'postgresql+psycopg://forewarn:***@db:5432/telemetry'
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
"""What a redacted secret is replaced with."""

DEFAULT_REDACT_PATTERNS: tuple[str, ...] = (
    # key=value secrets: password=..., token: ..., api_key=...
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|authorization)\b(\s*[=:]\s*)(\S+)",
    # bearer tokens in headers copied into messages
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+",
    # credentials inside URLs: scheme://user:password@host
    r"(?<=://)[^:/@\s]*:[^\s/]*(?=@)",
    # payment card numbers (13-19 digits, optionally grouped)
    r"\b(?:\d[ -]?){12,18}\d\b",
    # e-mail addresses
    r"(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.-]+",
)

"""The default ``FOREWARN_REDACT_PATTERNS``: key=value secrets, bearer tokens, URL credentials, card
numbers and e-mail addresses."""


_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*://"
# user:password@ right after the scheme; the password runs to the last @ before the path, so an
# unescaped @ inside it is still hidden.
_URL_USERINFO = re.compile(rf"(?P<head>{_SCHEME}[^:/?#@\s]*):(?P<password>[^\s/?#]*)@")
_QUERY_SECRET = re.compile(
    r"(?i)(?P<head>[?&;](?:password|passwd|pwd|secret|token|access[_-]?token|api[_-]?key|auth|"
    r"authorization|sig|signature)=)[^&#;\s]+"
)


def _render_with_sqlalchemy(url: str) -> str | None:
    """SQLAlchemy's masked form, but only when it parses ``url`` losslessly (else None).

    SQLAlchemy's parser is made for database URLs: it splits ``user:p@ss@host`` at the first ``@`` and
    rewrites ``#fragment`` as ``%23fragment``, so its rendering is used only when it found the same
    password as :data:`_URL_USERINFO` and rendering without masking gives back exactly the input.
    """
    userinfo = _URL_USERINFO.match(url)
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if (
            parsed.password is None
            or userinfo is None
            or unquote(userinfo["password"]) != parsed.password
            or parsed.render_as_string(hide_password=False) != url
        ):
            return None
        return parsed.render_as_string(hide_password=True)
    except Exception:  # ArgumentError, or ValueError for a port that is not a number
        return None


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; everything else is left as it was.

    Database URLs go through SQLAlchemy's own ``render_as_string(hide_password=True)``; anything it cannot
    parse exactly (other schemes, odd characters) is masked with a regular expression. Secret-looking
    query parameters (``?password=``, ``&token=``, ``&api_key=``, ...) are masked too.

    Example::

        >>> mask_url("redis://:hunter2@cache:6379/0")
        'redis://:***@cache:6379/0'
        >>> mask_url("https://api.example.com/v1?api_key=abc&page=2")
        'https://api.example.com/v1?api_key=***&page=2'
        >>> mask_url("sqlite:///telemetry.db")
        'sqlite:///telemetry.db'
    """
    text = str(url)
    masked = _render_with_sqlalchemy(text)
    if masked is None:
        masked = _URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["password"] else m[0], text)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}", masked)


__all__ = ["DEFAULT_REDACT_PATTERNS", "MASK", "mask_url"]
