"""forewarn: fault-tolerant Prefect flows that record every attempt and warn before they fail.

Example::

    import forewarn

    @forewarn.task(retries=3, retry_on=ConnectionError, fallback=lambda exc, order: "queued")
    def notify(order: str) -> str:
        ...

    @forewarn.flow(name="orders")
    def orders(order: str) -> str:
        return notify(order)

Names are imported lazily, so ``from forewarn import TelemetryStore`` in a notebook does not load Prefect.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("forewarn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# public name -> module that defines it
_EXPORTS = {
    # fault tolerance (Prefect-facing)
    "task": "forewarn.tasks",
    "flow": "forewarn.flows",
    "hardened": "forewarn.attempts",
    # policies and chaos
    "RetryPolicy": "forewarn.retry",
    "CircuitBreaker": "forewarn.breaker",
    "FaultInjector": "forewarn.chaos",
    "FaultProfile": "forewarn.chaos",
    # telemetry
    "TelemetryStore": "forewarn.store",
    "AttemptRecord": "forewarn.records",
    "AttemptOutcome": "forewarn.records",
    "FlowRunRecord": "forewarn.records",
    "RunState": "forewarn.records",
    "reliability_report": "forewarn.report",
    # failure early warning (pandas and scikit-learn only)
    "build_features": "forewarn.features",
    "FailureWarningModel": "forewarn.model",
    "ModelManifest": "forewarn.model",
    "load_model": "forewarn.model",
    "save_model": "forewarn.model",
    "walk_forward_backtest": "forewarn.backtest",
    "BacktestResult": "forewarn.backtest",
    "warning_metrics": "forewarn.metrics",
    "escape_rate": "forewarn.metrics",
    "train_and_save": "forewarn.training",
    "simulate_history": "forewarn.simulate",
    # configuration and errors
    "ForewarnSettings": "forewarn.settings",
    "ForewarnError": "forewarn.errors",
    "ConfigurationError": "forewarn.errors",
    "FallbackError": "forewarn.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    from forewarn.attempts import hardened
    from forewarn.backtest import BacktestResult, walk_forward_backtest
    from forewarn.breaker import CircuitBreaker
    from forewarn.chaos import FaultInjector, FaultProfile
    from forewarn.errors import ConfigurationError, FallbackError, ForewarnError
    from forewarn.features import build_features
    from forewarn.flows import flow
    from forewarn.metrics import escape_rate, warning_metrics
    from forewarn.model import FailureWarningModel, ModelManifest, load_model, save_model
    from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, RunState
    from forewarn.report import reliability_report
    from forewarn.retry import RetryPolicy
    from forewarn.settings import ForewarnSettings
    from forewarn.simulate import simulate_history
    from forewarn.store import TelemetryStore
    from forewarn.tasks import task
    from forewarn.training import train_and_save


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'forewarn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
