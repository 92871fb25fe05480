"""Secrets out of the run logs: a logging filter on Prefect's run loggers and forewarn's own.

When a task fails, Prefect logs ``Task run failed with exception: ValueError('password=...')`` and the
whole traceback through its ``prefect.task_runs`` logger (``prefect.flow_runs`` for a flow), to the
console and to the Prefect API, so the raw exception text of a failed task would reach Prefect's UI even
though forewarn's own telemetry stores it redacted. :class:`RedactingFilter` masks the same patterns as
the telemetry (``FOREWARN_REDACT_PATTERNS``), and the secrets of ``FOREWARN_DB_URL`` wherever they are
quoted, in a record's message, its traceback and its stack before any handler sees them.
``forewarn.task`` and ``forewarn.flow`` install it on :data:`REDACTED_LOGGERS` when they decorate a
function, unless ``FOREWARN_REDACT_PREFECT_LOGS=false``.

Example::

    >>> import logging
    >>> from forewarn.redaction import Redactor
    >>> record = logging.LogRecord("prefect.task_runs", logging.ERROR, "f.py", 1, "failed: %s", ("token=x",), None)
    >>> RedactingFilter(Redactor()).filter(record), record.getMessage()
    (True, 'failed: token=***')
"""

from __future__ import annotations

import logging
import threading

from forewarn.errors import ConfigurationError
from forewarn.masking import mask_url_secrets
from forewarn.redaction import Redactor
from forewarn.settings import get_settings

REDACTED_LOGGERS = (
    "prefect.task_runs",
    "prefect.flow_runs",
    "forewarn.telemetry",
    "forewarn.tasks",
    "forewarn.flows",
    "forewarn.warning",
)
"""The loggers the filter is installed on. A logger's filter sees only records logged through that very
logger (not those its children propagate), so each one that shows run errors is listed."""

LOG_MAX_CHARS = 100_000
"""A log record's text (message, traceback) is cut to this many characters: long enough for any real
traceback, short enough that redacting a pathological one stays fast."""

_install_lock = threading.Lock()


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record's message, traceback and stack; never drops a record.

    The message is formatted (``msg % args``) and masked. A traceback is formatted once here, masked and
    kept as the record's ``exc_text`` with ``exc_info`` cleared, so that no handler or formatter further
    down can format the raw exception again.
    """

    def __init__(self, redactor: Redactor, url: str | None = None) -> None:
        super().__init__()
        self.redactor = redactor
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask ``record`` in place; always True (the record is still logged)."""
        try:
            message = record.getMessage()
        except Exception:  # a record whose args do not fit its format: logging reports that itself
            return True
        record.msg, record.args = self._mask(message), None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
        record.exc_text = self._mask(record.exc_text)
        record.stack_info = self._mask(record.stack_info)
        return True

    def _mask(self, text: str | None) -> str | None:
        # The store URL's own secrets first: a driver quotes pieces of them that no pattern recognises.
        return self.redactor.redact(mask_url_secrets(text, self.url)) if text else text


def install_log_redaction(loggers: tuple[str, ...] = REDACTED_LOGGERS) -> RedactingFilter | None:
    """Put one :class:`RedactingFilter` on each of ``loggers``; None when ``FOREWARN_REDACT_PREFECT_LOGS``
    is false. Calling it again replaces the filter (new settings), never stacks a second one. Settings that
    do not load install the default patterns: the run reports the bad setting, and logs stay redacted.

    Example::

        >>> import logging
        >>> installed = install_log_redaction(("example.run",))
        >>> [type(f).__name__ for f in logging.getLogger("example.run").filters]
        ['RedactingFilter']
    """
    try:
        settings = get_settings()
    except ConfigurationError:
        # Decorating must not fail on settings a run will report anyway; meanwhile, redact by default.
        redacting = RedactingFilter(Redactor(max_chars=LOG_MAX_CHARS))
    else:
        if not settings.redact_prefect_logs:
            return None
        redactor = Redactor(patterns=settings.redact_patterns, max_chars=LOG_MAX_CHARS)
        redacting = RedactingFilter(redactor, url=settings.db_url)
    with _install_lock:
        for name in loggers:
            logger = logging.getLogger(name)
            for old in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
                logger.removeFilter(old)
            logger.addFilter(redacting)
    return redacting


__all__ = ["LOG_MAX_CHARS", "REDACTED_LOGGERS", "RedactingFilter", "install_log_redaction"]
