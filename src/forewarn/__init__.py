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
from typing import TYPE_CHECKING, Any

from forewarn import _moved
from forewarn._version import __version__

_moved.install()  # forewarn 0.1's flat module paths still import, with a DeprecationWarning

# public name -> the subpackage or module that exports it
_EXPORTS = {
    # fault tolerance: the Prefect layer
    "task": "forewarn.orchestration",
    "flow": "forewarn.orchestration",
    # policies, hardening and chaos (no Prefect)
    "RetryPolicy": "forewarn.resilience",
    "set_testing": "forewarn.resilience",
    "CircuitBreaker": "forewarn.resilience",
    "Hardening": "forewarn.resilience",
    "hardened": "forewarn.resilience",
    "FaultInjector": "forewarn.resilience",
    "FaultProfile": "forewarn.resilience",
    "HedgingPolicy": "forewarn.resilience",
    "Provider": "forewarn.resilience",
    # telemetry
    "TelemetryStore": "forewarn.store",
    "AttemptRecord": "forewarn.records",
    "AttemptOutcome": "forewarn.records",
    "FlowRunRecord": "forewarn.records",
    "RunState": "forewarn.records",
    # failure early warning (pandas and scikit-learn only)
    "reliability_report": "forewarn.learning",
    "build_features": "forewarn.learning",
    "FailureWarningModel": "forewarn.learning",
    "ModelManifest": "forewarn.learning",
    "load_model": "forewarn.learning",
    "save_model": "forewarn.learning",
    "walk_forward_backtest": "forewarn.learning",
    "BacktestResult": "forewarn.learning",
    "warning_metrics": "forewarn.learning",
    "escape_rate": "forewarn.learning",
    "train_and_save": "forewarn.learning",
    "simulate_history": "forewarn.history",
    # configuration
    "ForewarnSettings": "forewarn.settings",
    # every error a user can catch (the tree is drawn in forewarn.errors)
    "ForewarnError": "forewarn.errors",
    "ConfigurationError": "forewarn.errors",
    "FallbackError": "forewarn.errors",
    "AttemptTimeoutError": "forewarn.errors",
    "CircuitOpenError": "forewarn.errors",
    "StoreError": "forewarn.errors",
    "StoreUnreachableError": "forewarn.errors",
    "SchemaVersionError": "forewarn.errors",
    "InvalidRecordError": "forewarn.errors",
    "ImportValidationError": "forewarn.errors",
    "ModelError": "forewarn.errors",
    "InsufficientHistoryError": "forewarn.errors",
    "ChecksumMismatchError": "forewarn.errors",
    "FeatureSchemaError": "forewarn.errors",
    "UntrustedModelError": "forewarn.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    from forewarn.errors import (
        AttemptTimeoutError,
        ChecksumMismatchError,
        CircuitOpenError,
        ConfigurationError,
        FallbackError,
        FeatureSchemaError,
        ForewarnError,
        ImportValidationError,
        InsufficientHistoryError,
        InvalidRecordError,
        ModelError,
        SchemaVersionError,
        StoreError,
        StoreUnreachableError,
        UntrustedModelError,
    )
    from forewarn.history import simulate_history
    from forewarn.learning import (
        BacktestResult,
        FailureWarningModel,
        ModelManifest,
        build_features,
        escape_rate,
        load_model,
        reliability_report,
        save_model,
        train_and_save,
        walk_forward_backtest,
        warning_metrics,
    )
    from forewarn.orchestration import flow, task
    from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, RunState
    from forewarn.resilience import (
        CircuitBreaker,
        FaultInjector,
        FaultProfile,
        Hardening,
        HedgingPolicy,
        Provider,
        RetryPolicy,
        hardened,
        set_testing,
    )
    from forewarn.settings import ForewarnSettings
    from forewarn.store import TelemetryStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'forewarn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
