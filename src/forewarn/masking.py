"""What counts as a secret, and how a URL's secrets are hidden: the bottom of forewarn's redaction.

:data:`DEFAULT_REDACT_PATTERNS` are the regular expressions a recorded message is scrubbed with by
default, :data:`MASK` is what a secret becomes, :data:`SECRET_NAME` says which names (JSON keys, query
parameters, flow parameters) hold secrets, and :func:`mask_url` hides the password and secret query
parameters of a URL (:func:`url_secrets` lists them, to mask where a driver quotes them). Settings
(which shows URLs in its errors) and :mod:`forewarn.redaction` (which applies the patterns) both build
on this module, so neither has to import the other.

Example::

    >>> mask_url("postgresql+psycopg://forewarn:s3cret@db:5432/telemetry")
    'postgresql+psycopg://forewarn:***@db:5432/telemetry'
    >>> bool(SECRET_NAME.fullmatch("aws_secret_access_key")), bool(SECRET_NAME.fullmatch("batch_size"))
    (True, False)
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
"""What a redacted secret is replaced with."""

# The words that make a name secret, with any prefix ("db_password", "sslpassword", "x-api-key",
# "aws_secret_access_key") and a plural s; the name must end there, so "tokenizer" is not secret. A
# pattern using it starts only where a name starts, so a long run of name characters is read once.
_SECRET_WORDS = (
    r"password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"credentials?|authorization|auth[_-]?token|session[_-]?key|signature"
)
_SECRET_NAME = rf"[\w-]*?(?:{_SECRET_WORDS})s?"

SECRET_NAME = re.compile(rf"(?i){_SECRET_NAME}")
"""Names whose values are secrets, matched whole (``SECRET_NAME.fullmatch(name)``): ``password``,
``db_password``, ``client_secret``, ``refresh_token``, ``api_key``, ``aws_secret_access_key``, ..."""

DEFAULT_REDACT_PATTERNS: tuple[str, ...] = (
    # key=value, key: value, "key": "value" (JSON, Python reprs) and password 'value'; the named group
    # is what is masked, so a quoted value keeps its quotes and an unquoted one runs to the next space.
    rf"""(?i)(?<![\w-]){_SECRET_NAME}\b(?:["']?\s*[=:]\s*["']?|\s+["'])"""
    r"""(?P<secret>(?<=")(?:[^"\\\n]|\\.)*|(?<=')[^'\n]*|\S+)""",
    # the credentials of an Authorization header: Basic/Bearer/Digest/... and the token after it
    r"""(?i)\bauthorization["']?\s*[=:]\s*["']?(?P<secret>(?:basic|bearer|digest|negotiate|ntlm|token)\s+\S+)""",
    # bearer tokens in headers copied into messages
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+",
    # credentials inside URLs: scheme://user:password@host; the password runs to the last @ of the word,
    # so an unescaped @, /, ? or # inside it is hidden too
    r"(?<=://)[^:/?#\s]*:\S*(?=@)",
    # AWS access key ids, Google API keys, GitHub and Slack tokens
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b",
    r"\bAIza[0-9A-Za-z_-]{35}",
    r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{22,}|xox[abprs]-[A-Za-z0-9-]{10,})",
    # PEM private keys (GCP service accounts, SSH, TLS), also when cut before their END line
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.|\n)*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    # payment card numbers (13-19 digits, optionally grouped)
    r"\b(?:\d[ -]?){12,18}\d\b",
    # e-mail addresses
    r"(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.-]+",
)
"""The default ``FOREWARN_REDACT_PATTERNS``: secret-named keys with their values (key=value, JSON and
quoted forms), Authorization and bearer credentials, URL credentials, cloud and platform keys, PEM private
keys, card numbers and e-mail addresses."""


_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*://"
# user:password@ right after the scheme. The user may hold an unescaped @ (an e-mail address); the
# password runs to the LAST @ of the URL, so an unescaped @, /, ?, # or space inside it is hidden too.
# When the query or fragment also holds an @, more than the password is hidden: safe, if less pretty.
_WHOLE_URL_USERINFO = re.compile(rf"^(?P<head>\s*{_SCHEME}[^:/?#\s]*):(?P<password>.*)@", re.DOTALL)
# Inside running text a URL ends at whitespace: the password runs to the last @ of its word.
_TEXT_URL_USERINFO = re.compile(rf"(?P<head>{_SCHEME}[^:/?#\s]*):(?P<password>\S*)@")
# Secret query parameters. In a whole URL a value runs to the next & (SQLAlchemy's reading, so ; # and
# spaces may be part of a password); in running text it also ends at ; or whitespace.
_QUERY_KEY = rf"(?i)(?P<head>[?&;](?:{_SECRET_NAME}|auth|sig|sas)=)"
_WHOLE_URL_QUERY_SECRET = re.compile(rf"{_QUERY_KEY}[^&]+")
_TEXT_QUERY_SECRET = re.compile(rf"{_QUERY_KEY}[^&;\s]+")


def mask_url(url: str) -> str:
    """``url`` with its password and secret query parameters replaced by ``***``; the rest is kept.

    The password is everything between the user's ``:`` and the last ``@`` of the URL, so a password
    with an unescaped ``@``, ``#``, ``/``, ``?`` or a space is hidden whole (SQLAlchemy would split such a
    URL at its first ``@``, which is how half a password used to show). A text that holds URLs among
    other words (a driver's error message) has each URL masked up to the end of its word. Secret-named
    query parameters (``?password=``, ``&sslpassword=``, ``&token=``, ``&api_key=``, ...) are masked up to
    the next ``&`` (in running text, also up to a ``;`` or a space).

    Example::

        >>> mask_url("redis://:hunter2@cache:6379/0")
        'redis://:***@cache:6379/0'
        >>> mask_url("postgresql://bob:p@ss/w#rd@db:5432/telemetry")
        'postgresql://bob:***@db:5432/telemetry'
        >>> mask_url("https://api.example.com/v1?api_key=abc&page=2")
        'https://api.example.com/v1?api_key=***&page=2'
        >>> mask_url("sqlite:///telemetry.db")
        'sqlite:///telemetry.db'
    """
    text = str(url)
    if _is_one_url(text):
        userinfo, query = _WHOLE_URL_USERINFO, _WHOLE_URL_QUERY_SECRET
    else:
        userinfo, query = _TEXT_URL_USERINFO, _TEXT_QUERY_SECRET
    masked = userinfo.sub(lambda m: f"{m['head']}:{MASK}@" if m["password"] else m[0], text)
    return query.sub(lambda m: f"{m['head']}{MASK}", masked)


_MIN_PIECE = 3  # shorter pieces of a password are left alone: masking every "p" would garble the text


def url_secrets(url: str) -> tuple[str, ...]:
    """The secrets of one URL as other text may quote them, longest first, for masking them literally.

    A driver's error message does not show the URL, it quotes parts of it: when a password holds an
    unescaped ``@``, SQLAlchemy takes what follows that ``@`` as the host, and the driver then reports
    ``failed to resolve host 'ss@db'``. So the secrets are the password and the values of secret query
    parameters, as written and percent-decoded, and each of their ``@``-separated pieces of three or more
    characters.

    Example::

        >>> url_secrets("postgresql://bob:p@ss!word@db/telemetry?sslpassword=k3y")
        ('p@ss!word', 'ss!word', 'k3y')
        >>> url_secrets("sqlite:///telemetry.db")
        ()
    """
    text = str(url)
    whole: list[str] = []
    userinfo = _WHOLE_URL_USERINFO.match(text)
    if userinfo is not None and userinfo["password"]:
        whole.append(userinfo["password"])
    whole += [query[0][len(query["head"]) :] for query in _WHOLE_URL_QUERY_SECRET.finditer(text)]
    found = [piece for secret in whole for form in (secret, unquote(secret)) for piece in (form, *form.split("@"))]
    unique = {secret for secret in found if len(secret) >= _MIN_PIECE}
    return tuple(sorted(unique, key=lambda secret: (-len(secret), secret)))


def mask_url_secrets(text: str, url: str | None) -> str:
    """``text`` with every one of :func:`url_secrets` of ``url`` replaced by ``***`` (``url`` None: as is).

    Example::

        >>> mask_url_secrets("failed to resolve host 'ss!word@db'", "postgresql://bob:p@ss!word@db/t")
        "failed to resolve host '***@db'"
    """
    for secret in url_secrets(url) if url else ():
        text = text.replace(secret, MASK)
    return text


def _is_one_url(text: str) -> bool:
    """Whether ``text`` is a single URL (a setting's value), not a sentence that mentions URLs."""
    return re.match(rf"\s*{_SCHEME}", text) is not None and len(re.findall(_SCHEME, text)) == 1


__all__ = ["DEFAULT_REDACT_PATTERNS", "MASK", "SECRET_NAME", "mask_url", "mask_url_secrets", "url_secrets"]
