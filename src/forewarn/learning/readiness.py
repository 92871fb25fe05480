"""Is there enough history to train? The cold-start check the training and forecast flows share.

A model needs :data:`MIN_RUNS` labelled runs (ended ``COMPLETED`` or in a failure state; ``CANCELLED`` and
unfinished runs are not labelled) with :data:`MIN_FAILURES` failures among them (and two successes), the
defaults of :class:`~forewarn.learning.model.FailureWarningModel`. Until then the training and forecast
flows complete with :attr:`HistoryReadiness.message` instead of failing every time they run.

Example::

    >>> readiness = HistoryReadiness.from_state_counts({"COMPLETED": 150, "FAILED": 6, "CANCELLED": 3})
    >>> readiness.ready
    False
    >>> readiness.message
    'not enough history yet: 156 runs, 6 failures of the 200/20 needed'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from forewarn.learning.features.labels import failure_labels
from forewarn.records import FAILURE_STATES, RunState

MIN_RUNS = 200
"""Labelled runs training needs by default."""

MIN_FAILURES = 20
"""Failures among them training needs by default."""


@dataclass(frozen=True, slots=True)
class HistoryReadiness:
    """Labelled runs and failures in the history, against what training needs."""

    runs: int
    failures: int
    min_runs: int = MIN_RUNS
    min_failures: int = MIN_FAILURES

    @classmethod
    def from_runs(cls, runs: pd.DataFrame, **needed: int) -> HistoryReadiness:
        """Count a runs frame (``flow_run_id``, ``state``) as training labels it.

        Example::

            >>> HistoryReadiness.from_runs(pd.DataFrame({"flow_run_id": ["a", "b"], "state": ["FAILED", "RUNNING"]}))
            HistoryReadiness(runs=1, failures=1, min_runs=200, min_failures=20)
        """
        labels = failure_labels(runs).dropna()
        return cls(runs=len(labels), failures=int(labels.sum()), **needed)

    @classmethod
    def from_state_counts(cls, counts: Mapping[str, int], **needed: int) -> HistoryReadiness:
        """Count runs per state (:meth:`forewarn.store.TelemetryStore.state_counts`) as training labels them.

        Example::

            >>> HistoryReadiness.from_state_counts({"COMPLETED": 300, "CRASHED": 25}).ready
            True
        """
        failures = sum(n for state, n in counts.items() if state.upper() in FAILURE_STATES)
        successes = sum(n for state, n in counts.items() if state.upper() == RunState.COMPLETED.value)
        return cls(runs=failures + successes, failures=failures, **needed)

    @property
    def ready(self) -> bool:
        """True when training has enough labelled runs and failures (and two successes)."""
        needed_failures = max(self.min_failures, 2)
        return self.runs >= self.min_runs and self.failures >= needed_failures and self.runs - self.failures >= 2

    @property
    def message(self) -> str:
        """One sentence for logs and the command line: where the history stands."""
        if self.ready:
            return f"enough history: {self.runs:,} runs, {self.failures:,} failures (training needs {self.needed})"
        return f"not enough history yet: {self.runs:,} runs, {self.failures:,} failures of the {self.needed} needed"

    @property
    def needed(self) -> str:
        """``"200/20"``: the runs and failures training needs."""
        return f"{self.min_runs}/{self.min_failures}"

    def markdown(self, title: str) -> str:
        """A markdown artifact body saying where the history stands and how to get more.

        Example::

            >>> print(HistoryReadiness(12, 1).markdown("forewarn model").splitlines()[0])
            # forewarn model: not enough history yet
        """
        return (
            f"# {title}: not enough history yet\n\n"
            f"The store holds **{self.runs:,}** labelled runs with **{self.failures:,}** failures; training needs "
            f"{self.min_runs:,} runs and {self.min_failures:,} failures. This run completed without a model.\n\n"
            "To get there sooner:\n\n"
            "- `forewarn import-prefect` imports the flow and task runs Prefect already keeps "
            "(the training deployment does it first with `import_prefect: true`);\n"
            "- `forewarn import-runs` / `import-attempts` import another scheduler's history (docs/import.md);\n"
            "- every run of a `forewarn.flow` is recorded from now on.\n"
        )


__all__ = ["MIN_FAILURES", "MIN_RUNS", "HistoryReadiness"]
