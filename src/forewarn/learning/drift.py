"""Has the world moved since the model was trained? The risk distribution and the failure rate, compared.

Two comparisons, each a pure function:

* **PSI of the risk** (population stability index): the training runs' risks, as the final model scored
  them, are cut into ``bins`` bins at their own quantiles (:func:`risk_reference`, saved in the model's
  manifest); the live risks are counted in the same bins, and
  ``PSI = sum over bins of (live_i - ref_i) * ln(live_i / ref_i)``, each share floored at
  :data:`PSI_FLOOR` so an empty bin does not make it infinite. Read it the conventional way: below 0.1
  stable, 0.1 to 0.25 a moderate shift, 0.25 and above a shift large enough to retrain on
  (:data:`PSI_RETRAIN`).
* **Failure-rate change** with a confidence interval: ``live - training``, with Newcombe's hybrid score
  interval (method 10 of Newcombe, 1998, built from the two Wilson score intervals), which keeps its
  coverage for small counts and rates near 0 where the textbook Wald interval does not.

Example::

    >>> reference = risk_reference([0.1, 0.2, 0.3, 0.4], bins=2)
    >>> reference.edges, reference.fractions
    ((0.25,), (0.5, 0.5))
    >>> round(population_stability(reference, [0.1, 0.2, 0.3, 0.4]), 6)
    0.0
    >>> low, high = rate_difference_interval(56, 70, 48, 80)   # Newcombe (1998), table II, example (a)
    >>> round(low, 4), round(high, 4)
    (0.0524, 0.3339)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

PSI_FLOOR = 1e-4
"""The smallest share a bin counts with in the PSI (an empty bin would make ``ln`` infinite)."""

PSI_MODERATE = 0.1
"""PSI at or above this: a moderate shift of the risk distribution (reported, not acted on)."""

PSI_RETRAIN = 0.25
"""PSI at or above this: the risk distribution moved far enough to retrain."""

REFERENCE_BINS = 10

REFERENCE_SAMPLE = 50_000
"""At most this many training runs are scored for the reference (:func:`reference_rows`): ten decile shares
from 50,000 runs are within about 0.003 of the whole history's (two standard errors), and scoring all of a
300,000-run history one row-thread at a time took 7.6 s, a fifth of the training."""


@dataclass(frozen=True, slots=True)
class RiskReference:
    """The training runs' risk distribution: interior bin ``edges`` and the share of runs in each bin.

    A risk ``r`` falls in bin ``i`` when ``edges[i-1] <= r < edges[i]`` (the first bin is open below, the
    last above), so there is one more fraction than edges. ``runs`` is how many risks the shares are of.

    Example::

        >>> RiskReference.from_json({"edges": [0.5], "fractions": [0.75, 0.25], "runs": 4}).fractions
        (0.75, 0.25)
    """

    edges: tuple[float, ...]
    fractions: tuple[float, ...]
    runs: int

    def __post_init__(self) -> None:
        if len(self.fractions) != len(self.edges) + 1:
            raise ValueError(f"{len(self.edges)} edges need {len(self.edges) + 1} fractions, not {len(self.fractions)}")
        if list(self.edges) != sorted(set(self.edges)):
            raise ValueError(f"edges must increase strictly, got {list(self.edges)}")
        if any(not (0.0 <= f <= 1.0) for f in self.fractions) or not math.isclose(sum(self.fractions), 1.0):
            raise ValueError(f"fractions must be shares in [0, 1] that add up to 1, got {list(self.fractions)}")

    def shares(self, risk: Any) -> np.ndarray:
        """The share of ``risk`` values (NaN left out) in each of this reference's bins."""
        values = np.asarray(risk, dtype=float)
        values = values[~np.isnan(values)]
        counts = np.bincount(np.searchsorted(self.edges, values, side="right"), minlength=len(self.fractions))
        return counts / len(values) if len(values) else counts.astype(float)

    def to_json(self) -> dict[str, Any]:
        """What the model manifest stores under ``extra["risk_reference"]``."""
        return {"edges": list(self.edges), "fractions": list(self.fractions), "runs": self.runs}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RiskReference:
        """The inverse of :meth:`to_json`; ``ValueError`` naming what is wrong with a malformed value."""
        try:
            edges = tuple(float(e) for e in data["edges"])
            fractions = tuple(float(f) for f in data["fractions"])
            runs = int(data["runs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a risk reference needs edges, fractions and runs: {exc}") from None
        return cls(edges, fractions, runs)


def reference_rows(n_runs: int, limit: int = REFERENCE_SAMPLE, seed: int = 0) -> np.ndarray:
    """Positions of the training runs whose risks make the reference: every run up to ``limit``, else a
    seeded uniform sample of ``limit`` of them, in their order (so the same history gives the same rows).

    Example::

        >>> reference_rows(5).tolist(), len(reference_rows(100_000)), len(set(reference_rows(100_000, 7)))
        ([0, 1, 2, 3, 4], 50000, 7)
    """
    if n_runs <= limit:
        return np.arange(n_runs)
    return np.sort(np.random.default_rng(seed).choice(n_runs, limit, replace=False))


def risk_reference(risk: Any, bins: int = REFERENCE_BINS) -> RiskReference:
    """Cut the training runs' ``risk`` into ``bins`` bins at its quantiles; equal quantiles merge.

    Example::

        >>> risk_reference([0.1, 0.1, 0.1, 0.9], bins=4)     # tied quantiles make one bin
        RiskReference(edges=(0.5,), fractions=(0.75, 0.25), runs=4)
    """
    values = np.asarray(risk, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        raise ValueError("no risks to build a reference distribution from")
    cuts = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1], method="midpoint") if bins > 1 else np.array([])
    # a bin holds [edge, next edge): an edge at the smallest risk would open an empty first bin
    edges = tuple(float(e) for e in np.unique(cuts[cuts > values.min()]))
    reference = RiskReference(edges, (1.0,) + (0.0,) * len(edges), len(values))  # shape only; shares below
    shares = reference.shares(values)
    return RiskReference(edges, tuple(float(s) for s in shares), len(values))


def population_stability(reference: RiskReference, risk: Any) -> float | None:
    """PSI of ``risk`` against ``reference`` (see the module docstring); ``None`` without a live risk.

    Example::

        >>> reference = RiskReference((0.5,), (0.5, 0.5), runs=100)
        >>> round(population_stability(reference, [0.9, 0.9, 0.9, 0.1]), 4)   # 3/4 high instead of 1/2
        0.2747
    """
    values = np.asarray(risk, dtype=float)
    if not (~np.isnan(values)).any():
        return None
    live = np.maximum(reference.shares(values), PSI_FLOOR)
    expected = np.maximum(np.asarray(reference.fractions), PSI_FLOOR)
    return float(np.sum((live - expected) * np.log(live / expected)))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of the proportion ``successes / n``; ``None`` when ``n == 0``.

    Example::

        >>> low, high = wilson_interval(0, 10)
        >>> round(low, 4), round(high, 4)
        (0.0, 0.2775)
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_difference_interval(
    x1: int, n1: int, x0: int, n0: int, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval of ``x1/n1 - x0/n0``; ``None`` when either ``n`` is 0.

    Example::

        >>> low, high = rate_difference_interval(9, 10, 3, 10)    # Newcombe (1998), table II, example (c)
        >>> round(low, 4), round(high, 4)
        (0.1705, 0.809)
    """
    first, second = wilson_interval(x1, n1, confidence), wilson_interval(x0, n0, confidence)
    if first is None or second is None:
        return None
    p1, p0 = x1 / n1, x0 / n0
    (l1, u1), (l0, u0) = first, second
    difference = p1 - p0
    low = difference - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return low, high


__all__ = [
    "PSI_FLOOR",
    "PSI_MODERATE",
    "PSI_RETRAIN",
    "RiskReference",
    "population_stability",
    "rate_difference_interval",
    "risk_reference",
    "wilson_interval",
]
