"""Failover: an ordered list of providers for one call, tried in turn until one succeeds.

A :class:`Provider` is either a callable that replaces the task's own function (a second payment gateway
client) or a set of keyword arguments laid over the call's (the same client pointed at another host), with
an optional circuit breaker of its own. The attempt loop runs each provider's retries in turn and moves to
the next provider when one has failed for good or its breaker is open; every attempt row names the
provider that served it, so each switch is in the telemetry.

Example::

    >>> def primary(order): raise ConnectionError("gateway down")
    >>> def backup(order): return f"charged {order} on backup"
    >>> [p.name for p in providers_of([primary, backup, {"region": "eu"}])]
    ['primary', 'backup', 'parameters 3']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from forewarn.errors import ConfigurationError
from forewarn.resilience.breaker import CircuitBreaker


@dataclass(frozen=True, slots=True)
class Provider:
    """One way to serve a call: ``call`` replaces the task's function (``None``: the task's own), and
    ``parameters`` are keyword arguments laid over the call's. ``breaker`` guards this provider only.

    Example::

        >>> p = Provider("eu", parameters={"region": "eu"})
        >>> p.bind(lambda order, region="us": (order, region), ("A-1",), {})()
        ('A-1', 'eu')
    """

    name: str
    call: Callable[..., Any] | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    breaker: CircuitBreaker | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError("Provider.name", self.name, 'a non-empty str, e.g. Provider("backup", call=...)')
        if self.call is not None and not callable(self.call):
            raise ConfigurationError("Provider.call", self.call, "a callable taking the task's arguments, or None")
        if not isinstance(self.parameters, Mapping) or not all(isinstance(k, str) for k in self.parameters):
            raise ConfigurationError(
                "Provider.parameters", self.parameters, 'keyword arguments by name, e.g. {"host": "backup.example"}'
            )

    def bind(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[], Any]:
        """A no-argument callable making this provider's call with ``args`` and ``kwargs``, its
        ``parameters`` replacing the arguments of the same name however they were passed (Prefect passes
        a task's parameters by position)."""
        target = self.call if self.call is not None else fn
        if not self.parameters:
            return lambda: target(*args, **kwargs)
        try:
            bound = inspect.signature(target).bind(*args, **kwargs)
        except (TypeError, ValueError):  # no signature to read, or the call does not fit it: by keyword
            merged = {**kwargs, **self.parameters}
            return lambda: target(*args, **merged)
        bound.arguments.update(self.parameters)
        return lambda: target(*bound.args, **bound.kwargs)


def providers_of(items: Sequence[Provider | Callable[..., Any] | Mapping[str, Any]]) -> tuple[Provider, ...]:
    """The :class:`Provider` values for ``providers=[...]``: a callable is named by its ``__name__``, a
    mapping of keyword arguments ``"parameters <n>"`` (never by its values, which may hold secrets).

    Example::

        >>> providers_of([])
        Traceback (most recent call last):
        ...
        forewarn.errors.ConfigurationError: providers=[] is invalid: expected at least one provider ...
    """
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence) or not items:
        raise ConfigurationError(
            "providers",
            items,
            "at least one provider in a list, in the order to try them: callables, keyword-argument dicts "
            "or Provider values, e.g. providers=[primary_gateway, backup_gateway]",
        )
    out: list[Provider] = []
    for n, item in enumerate(items, start=1):
        if isinstance(item, Provider):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(Provider(f"parameters {n}", parameters=dict(item)))
        elif callable(item):
            out.append(Provider(str(getattr(item, "__name__", f"provider {n}")), call=item))
        else:
            raise ConfigurationError(
                f"providers[{n - 1}]", item, "a callable, a dict of keyword arguments, or a Provider"
            )
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise ConfigurationError(
            "providers", names, 'distinct provider names (they are recorded), e.g. Provider("backup", call=...)'
        )
    return tuple(out)


__all__ = ["Provider", "providers_of"]
