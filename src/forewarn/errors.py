"""Exceptions raised by forewarn.

Every error forewarn raises on purpose derives from :class:`ForewarnError`. Children that describe bad
input or configuration also derive from :class:`ValueError`, so ``except ValueError`` keeps working::

    ForewarnError
    ├── ConfigurationError (ValueError)       a FOREWARN_* setting or a decorator option is wrong
    ├── StoreError                            the telemetry store cannot be opened or used
    │   ├── StoreUnreachableError             the database URL does not answer
    │   └── SchemaVersionError                the store was written by a newer forewarn, or its version is no number
    ├── InvalidRecordError (ValueError, TypeError)
    │                                         a record, frame or argument the store cannot take
    ├── FallbackError                         a task failed and its fallback failed too
    ├── AttemptTimeoutError (TimeoutError)    one attempt ran past its timeout_seconds
    ├── CircuitOpenError                      a circuit breaker refused the call without trying it
    ├── ImportValidationError (ValueError)    a history CSV was rejected; ``.problems`` lists the lines
    └── ModelError                            a model cannot be trained, saved or loaded
        ├── InsufficientHistoryError (ValueError)
        ├── ChecksumMismatchError             the artifact's bytes differ from its manifest
        ├── UntrustedModelError               its signature fails, or others could have swapped its files
        └── FeatureSchemaError (ValueError)   the model expects other features than offered

Example::

    >>> from forewarn.errors import ConfigurationError
    >>> try:
    ...     raise ConfigurationError("FOREWARN_RETRIES", "-1", "a whole number >= 0, e.g. FOREWARN_RETRIES=3")
    ... except ValueError as exc:
    ...     print(exc)
    FOREWARN_RETRIES='-1' is invalid: expected a whole number >= 0, e.g. FOREWARN_RETRIES=3
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class ForewarnError(Exception):
    """Root of every error forewarn raises on purpose."""


def _rebuild(cls: type[Exception], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Exception:
    """Unpickle an error whose constructor takes keyword-only context."""
    return cls(*args, **kwargs)


class ConfigurationError(ForewarnError, ValueError):
    """A setting or an option has a value forewarn cannot use.

    ``.setting`` names it, ``.value`` is what was given and ``.expected`` describes the accepted form.
    """

    def __init__(self, setting: str, value: Any, expected: str) -> None:
        self.setting = setting
        self.value = value
        self.expected = expected
        super().__init__(f"{setting}={value!r} is invalid: expected {expected}")

    def __reduce__(self) -> tuple[Any, ...]:  # Prefect may pickle a failed state's exception
        return (type(self), (self.setting, self.value, self.expected))


class StoreError(ForewarnError):
    """The telemetry store cannot be opened or used. ``.url`` is the URL with its password masked."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, {"url": self.url}))


class StoreUnreachableError(StoreError):
    """The database named by the store URL does not answer."""


class SchemaVersionError(StoreError):
    """The store's schema was written by a newer forewarn than this one, or its recorded version is not one."""


class InvalidRecordError(ForewarnError, ValueError, TypeError):
    """A record, frame or argument given to the telemetry store cannot be written or used.

    A naive datetime, an unknown state, a frame without a required column, a negative ``limit``: the
    message names the argument and shows an accepted value. It is a ``ValueError`` *and* a ``TypeError``
    because the store raised one or the other for these before, so ``except ValueError`` and
    ``except TypeError`` both keep catching it. Nothing was written.
    """


class FallbackError(ForewarnError):
    """A task failed and then its fallback failed too.

    ``.task_error`` is the task's last error and ``.fallback_error`` the fallback's; the fallback's error is
    also chained as ``__cause__`` so both show in the traceback.
    """

    def __init__(self, task_name: str, task_error: BaseException, fallback_error: BaseException) -> None:
        self.task_name = task_name
        self.task_error = task_error
        self.fallback_error = fallback_error
        super().__init__(
            f"task {task_name!r} failed with {type(task_error).__name__}: {task_error}; "
            f"its fallback failed too with {type(fallback_error).__name__}: {fallback_error}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task_name, self.task_error, self.fallback_error))


class AttemptTimeoutError(ForewarnError, TimeoutError):
    """One attempt of a task ran longer than its ``timeout_seconds``."""

    def __init__(self, task_name: str, timeout_seconds: float) -> None:
        self.task_name = task_name
        self.timeout_seconds = timeout_seconds
        super().__init__(f"task {task_name!r} attempt timed out after {timeout_seconds:g}s")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task_name, self.timeout_seconds))


class CircuitOpenError(ForewarnError):
    """A circuit breaker is open and refused the call. ``.retry_after`` is seconds until it half-opens."""

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(f"circuit {name!r} is open after repeated failures; next trial in {retry_after:.1f}s")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.retry_after))


class ImportValidationError(ForewarnError, ValueError):
    """A history file was rejected whole. ``.problems`` holds ``(line, reason)`` pairs, ``.path`` the file.

    ``skippable`` says the problems are rows that ``--skip-invalid`` would leave out (the importer's row
    checks); the message then counts those rows (one row may have several problems) and names the option.
    Otherwise the file itself cannot be read as history (not UTF-8, a broken quote, a bad header, not SWF...)
    and skipping rows would not help, so the message does not suggest it.
    """

    def __init__(
        self, path: Path | str, problems: Sequence[tuple[int, str]], *, shown: int = 20, skippable: bool = False
    ) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        self.skippable = skippable
        lines = "\n".join(f"  line {line}: {reason}" for line, reason in self.problems[:shown])
        more = len(self.problems) - shown
        tail = f"\n  ... and {more} more" if more > 0 else ""
        if skippable:
            rows = len({line for line, _ in self.problems})
            counted = f" ({len(self.problems)} problems)" if len(self.problems) != rows else ""
            head = f"{self.path}: {rows} invalid row(s){counted}, nothing was imported"
            advice = (
                "Fix these rows, or pass --skip-invalid REJECTS.csv to import the valid rows and write the "
                "rejected ones with their reasons."
            )
        else:
            head = f"{self.path} cannot be read as history, nothing was imported"
            advice = "Fix the file: --skip-invalid skips invalid rows, not a file that cannot be read."
        super().__init__(f"{head}:\n{lines}{tail}\n{advice}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (self.path, self.problems), {"skippable": self.skippable}))


class ModelError(ForewarnError):
    """A failure-warning model cannot be trained, saved or loaded. ``.path`` names the artifact if any."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, {"path": self.path}))


class InsufficientHistoryError(ModelError, ValueError):
    """There is too little history (runs or failures) to train a useful model."""


class ChecksumMismatchError(ModelError):
    """A model artifact's SHA-256 differs from its manifest; it was not unpickled."""


class UntrustedModelError(ModelError):
    """A saved model was refused before unpickling: no valid signature under the model key, no key to check
    it with, or files that others could have swapped (writable by group or others, or leading outside the
    models directory)."""


class FeatureSchemaError(ModelError, ValueError):
    """A model was trained on other features than the ones offered to it."""


__all__ = [
    "AttemptTimeoutError",
    "ChecksumMismatchError",
    "CircuitOpenError",
    "ConfigurationError",
    "FallbackError",
    "FeatureSchemaError",
    "ForewarnError",
    "ImportValidationError",
    "InsufficientHistoryError",
    "InvalidRecordError",
    "ModelError",
    "SchemaVersionError",
    "StoreError",
    "StoreUnreachableError",
    "UntrustedModelError",
]
