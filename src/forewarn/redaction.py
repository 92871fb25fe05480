"""Keep secrets out of recorded exception messages and printed URLs.

:class:`Redactor` replaces whatever its regular expressions match with ``***`` and cuts the message to a
maximum length; the telemetry writer runs every exception message through one before storing it.
:func:`redact_parameters` masks a flow run's parameters (secret-named keys, and secrets inside strings)
before they are stored.
:func:`mask_url` (defined in :mod:`forewarn.masking`) hides the password in a URL, e.g. a database URL shown
in an error or a log line.

Example::

    >>> Redactor().redact("login failed: password=hunter2 for bob@example.com")
    'login failed: password=*** for ***'
    >>> mask_url("postgresql+psycopg://forewarn:s3cret@db:5432/telemetry")
    'postgresql+psycopg://forewarn:***@db:5432/telemetry'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from forewarn.errors import ConfigurationError
from forewarn.masking import DEFAULT_REDACT_PATTERNS, MASK, SECRET_NAME, mask_url

if TYPE_CHECKING:
    from forewarn.settings import ForewarnSettings

TRUNCATION_MARKER = "…"
"""Ends a message that was cut to ``max_chars``."""

# Matching stops this many characters past max_chars: the rest is cut off anyway, and patterns such as
# [\w.+-]+@ can take quadratic time on a long run of word characters (a base64 blob in a message).
_SCAN_MARGIN = 1000


class Redactor:
    """Masks secrets in messages with ``***``, then cuts them to ``max_chars`` characters.

    Each pattern is compiled once. A pattern with a group named ``secret``, like the default
    ``\\b(?:password|token|...)\\s*[=:]\\s*(?P<secret>\\S+)``, masks only that group, so
    ``password=hunter2`` becomes ``password=***`` and ``{"token": "abc"}`` becomes ``{"token": "***"}``.
    Otherwise a pattern with exactly three groups (``(password)(=)(\\S+)``) masks only group 3, and any
    other pattern masks its whole match.

    Patterns are matched against the original message, in order, and overlapping masks merge into one
    ``***``. A match that *begins inside* an earlier pattern's mask is skipped, as if the earlier mask had
    already been applied (so ``https://bob:pa55@api.example.com`` keeps its host instead of losing
    ``pa55@api.example.com`` as an e-mail address); a match that begins at or before an earlier mask and
    runs past it widens the mask (so ``Authorization: Bearer abc`` loses the whole token, not only the
    word ``Bearer`` that the key=value pattern takes as the value).

    A message longer than ``max_chars`` keeps its first ``max_chars - 1`` characters and gets a trailing
    ``…``. Matching stops 1,000 characters past ``max_chars``: that tail is cut off anyway, and skipping
    it bounds the cost of the patterns on huge messages.

    Example::

        >>> Redactor(patterns=[r"sk-\\w+"], max_chars=20).redact("key sk-live123 rejected by the API")
        'key *** rejected by…'
    """

    def __init__(self, patterns: Sequence[str] = DEFAULT_REDACT_PATTERNS, max_chars: int = 500) -> None:
        if isinstance(patterns, str):
            raise ConfigurationError(
                "Redactor.patterns", patterns, f"a list of regular expressions, e.g. patterns=[{patterns!r}]"
            )
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise ConfigurationError("Redactor.max_chars", max_chars, "a whole number >= 1, e.g. max_chars=500")
        compiled: list[re.Pattern[str]] = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern))
            except (re.error, TypeError) as exc:
                raise ConfigurationError(
                    "Redactor.patterns", pattern, f"a valid regular expression ({exc}), e.g. r'secret-\\w+'"
                ) from None
        self.patterns: tuple[str, ...] = tuple(patterns)
        self.max_chars = max_chars
        self._compiled = tuple(compiled)

    def __repr__(self) -> str:
        return f"Redactor({len(self.patterns)} patterns, max_chars={self.max_chars})"

    @classmethod
    def from_settings(cls, settings: ForewarnSettings | None = None) -> Redactor:
        """The redactor ``FOREWARN_REDACT_PATTERNS`` and ``FOREWARN_MESSAGE_MAX_CHARS`` describe.

        ``settings`` defaults to :func:`forewarn.settings.get_settings`.

        Example::

            >>> from forewarn.settings import ForewarnSettings
            >>> Redactor.from_settings(ForewarnSettings(message_max_chars=40)).max_chars
            40
        """
        if settings is None:
            from forewarn.settings import get_settings

            settings = get_settings()
        return cls(patterns=settings.redact_patterns, max_chars=settings.message_max_chars)

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """The merged (start, end) ranges of ``text`` to mask."""
        spans: list[tuple[int, int]] = []
        for regex in self._compiled:
            found: list[tuple[int, int]] = []
            for match in regex.finditer(text):
                start, end = _masked_span(regex, match)
                # A match beginning inside an earlier mask read part of a secret as its own text (the
                # "pa55@api.example.com" e-mail inside user:pa55@host); as if masked first, it is skipped.
                if end > start and not any(s < start < e for s, e in spans):
                    found.append((start, end))
            spans.extend(found)
        spans.sort()
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def mask(self, text: str) -> str:
        """``text`` with every match masked, whole: no truncation and no scan limit.

        For values that must be kept whole (flow parameters, a log record's traceback); the caller bounds
        their size. :meth:`redact` is the bounded form for recorded messages.

        Example::

            >>> Redactor().mask('{"password": "hunter2", "rows": 12}')
            '{"password": "***", "rows": 12}'
        """
        pieces: list[str] = []
        position = 0
        for start, end in self._spans(text):
            pieces.append(text[position:start])
            pieces.append(MASK)
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def redact(self, message: str | None) -> str | None:
        """``message`` with every match masked and cut to ``max_chars``; ``None`` stays ``None``.

        Example::

            >>> redactor = Redactor()
            >>> redactor.redact("GET https://bob:pa55@api.example.com failed with token: abc123")
            'GET https://***@api.example.com failed with token: ***'
            >>> redactor.redact(None) is None
            True
        """
        if message is None:
            return None
        redacted = self.mask(str(message)[: self.max_chars + _SCAN_MARGIN])
        if len(redacted) > self.max_chars:
            redacted = redacted[: self.max_chars - 1] + TRUNCATION_MARKER
        return redacted


def redact_parameters(value: Any, redactor: Redactor | None = None) -> Any:
    """A JSON-like ``value`` (a flow run's parameters) with its secrets masked, recursively.

    The value of every secret-named key (:data:`~forewarn.masking.SECRET_NAME`: ``password``,
    ``api_key``, ``db_token``, ``credentials``, ...) becomes ``***`` whatever it held (a string, a number,
    a whole dict); every other string is masked with ``redactor``'s patterns, whole (URL passwords, JSON
    text, e-mail addresses). Lists and dicts are copied, never changed in place; other values are kept.

    Example::

        >>> redact_parameters({"day": "2026-11-01", "source": {"url": "https://u:pw@h/x", "api_key": 42}})
        {'day': '2026-11-01', 'source': {'url': 'https://***@h/x', 'api_key': '***'}}
    """
    redactor = redactor or Redactor()
    if isinstance(value, dict):
        return {
            key: MASK if SECRET_NAME.fullmatch(str(key)) else redact_parameters(item, redactor)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_parameters(item, redactor) for item in value]
    if isinstance(value, str):
        # mask_url first: a parameter that is one URL may hold a password with spaces in it
        return redactor.mask(mask_url(value))
    return value


def _masked_span(regex: re.Pattern[str], match: re.Match[str]) -> tuple[int, int]:
    """The part of ``match`` to mask: its ``secret`` group, else group 3 of three, else all of it."""
    group: str | int
    if "secret" in regex.groupindex:
        group = "secret"
    elif regex.groups == 3:
        group = 3
    else:
        return match.span()
    return match.span(group) if match.start(group) >= 0 else match.span()


__all__ = ["DEFAULT_REDACT_PATTERNS", "MASK", "TRUNCATION_MARKER", "Redactor", "mask_url", "redact_parameters"]
