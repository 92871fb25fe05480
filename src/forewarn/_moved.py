"""The module paths of forewarn 0.1's flat layout keep working for one release, with a DeprecationWarning.

forewarn 0.1 kept every module at the package root (``forewarn.retry``, ``forewarn.model``, ...); they now
live in layer subpackages. ``import forewarn`` installs :class:`MovedModuleFinder`, which answers an old
path with the module at its new one (the same module object, so ``isinstance`` checks and monkeypatching
keep working) after warning once per path. ``forewarn.store`` and ``forewarn.scoring`` are packages now and
need no alias: they export the names users imported from them.

Example::

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     from forewarn.retry import RetryPolicy
    >>> RetryPolicy.__module__, caught[0].category.__name__
    ('forewarn.resilience.retry', 'DeprecationWarning')
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

MOVED: dict[str, str] = {
    "forewarn.retry": "forewarn.resilience.retry",
    "forewarn.breaker": "forewarn.resilience.breaker",
    "forewarn.timeout": "forewarn.resilience.timeout",
    "forewarn.attempts": "forewarn.resilience.attempts",
    "forewarn.chaos": "forewarn.resilience.chaos",
    "forewarn.schema": "forewarn.store.schema",
    "forewarn.migrations": "forewarn.store.migrations",
    "forewarn.features": "forewarn.learning.features",
    "forewarn.model": "forewarn.learning.model",
    "forewarn.metrics": "forewarn.learning.metrics",
    "forewarn.backtest": "forewarn.learning.backtest",
    "forewarn.training": "forewarn.learning.training",
    "forewarn.report": "forewarn.learning.report",
    "forewarn.summary": "forewarn.learning.summary",
    "forewarn.snapshot": "forewarn.scoring.snapshot",
    "forewarn.importer": "forewarn.history.importer",
    "forewarn.simulate": "forewarn.history.simulate",
    "forewarn.tasks": "forewarn.orchestration.tasks",
    "forewarn.flows": "forewarn.orchestration.flows",
    "forewarn.recorder": "forewarn.orchestration.recorder",
    "forewarn.warning": "forewarn.orchestration.warning",
    "forewarn.forecast": "forewarn.orchestration.forecast",
}
"""Old module path -> the module that holds its contents now."""


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths in :data:`MOVED`; loading one puts the new module in its place in ``sys.modules``."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a placeholder, replaced in exec_module

    def exec_module(self, module: ModuleType) -> None:
        # The import system returns whatever sys.modules holds under the name once this returns, so the
        # caller gets the real module, whose own __spec__ and __name__ are left untouched.
        old = module.__name__
        new = MOVED[old]
        warnings.warn(
            f"{old} moved to {new}; the old path will be removed in the next release. "
            f"Import from {new}, or the public name from forewarn itself.",
            DeprecationWarning,
            stacklevel=2,
        )
        sys.modules[old] = importlib.import_module(new)


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``import forewarn`` calls this)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())


__all__ = ["MOVED", "MovedModuleFinder", "install"]
