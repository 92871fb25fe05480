"""One batch of targets seen against a prepared history: the targets coded, the rows some cutoff can see,
and each target's windows among the rows of its own flow.

Every feature family reads these; they are computed once per :func:`~forewarn.learning.features.build_features`
call, so the families only add their own cumulative sums and searches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forewarn.learning.features._columns import optional_text, parameter_hashes, text, timedelta_ns
from forewarn.learning.features._sorted import Grouped, cumulative, distinct, take_or
from forewarn.learning.features.config import FeatureConfig
from forewarn.learning.features.index import RunIndex


@dataclass(frozen=True, slots=True)
class Targets:
    """The runs being described: ids, times, and their flow, version and parameter-set codes.

    A value the history never had gets a code of its own: an unseen flow the next free code (shared with the
    attempts of the same build through :attr:`unseen_flows`), every unseen version or parameter set the one
    code past the vocabulary's end, which no history row has.
    """

    frame: pd.DataFrame
    ids: np.ndarray
    reference: np.ndarray
    """Scheduled start (start time when there is none), int64 ns."""
    cutoff: np.ndarray
    """``reference - lead``: only history known strictly before it counts."""
    flow_names: np.ndarray
    flow: np.ndarray
    version: np.ndarray
    params: np.ndarray
    unseen_flows: dict[str, int]
    flow_count: int
    """Flow codes in use (the vocabulary's, the unseen ones, and one spare): a stride for composite keys."""
    version_count: int
    params_count: int

    @classmethod
    def coded(
        cls, frame: pd.DataFrame, ids: np.ndarray, reference: np.ndarray, cutoff: np.ndarray, runs: RunIndex
    ) -> Targets:
        """The targets of ``frame`` coded in the vocabularies of ``runs`` (which are not grown)."""
        vocab = runs.vocab
        flow_names = text(frame["flow_name"])
        unseen_flows: dict[str, int] = {}
        flow = vocab.flows.lookup(flow_names, unseen_flows)
        version_count, params_count = len(vocab.versions) + 1, len(vocab.params) + 1
        version = np.minimum(vocab.versions.lookup(optional_text(frame, "flow_version"), {}), version_count - 1)
        params = np.minimum(vocab.params.lookup(parameter_hashes(frame), {}), params_count - 1)
        return cls(
            frame=frame,
            ids=ids,
            reference=reference,
            cutoff=cutoff,
            flow_names=flow_names,
            flow=flow,
            version=version,
            params=params,
            unseen_flows=unseen_flows,
            flow_count=len(vocab.flows) + len(unseen_flows) + 1,
            version_count=version_count,
            params_count=params_count,
        )


@dataclass(frozen=True, slots=True)
class VisibleRuns:
    """The rows of a :class:`~forewarn.learning.features.RunIndex` that some target's cutoff can see.

    The index is in known-at order, so they are one slice: from the earliest cutoff minus the lookback and
    the global window (co-failure events look one window further back) to the latest cutoff.
    """

    known: np.ndarray
    flow: np.ndarray
    failed: np.ndarray
    succeeded: np.ndarray
    labelled: np.ndarray
    """Failed or succeeded: the runs a failure rate counts (``CANCELLED`` ones are not)."""
    version: np.ndarray
    params: np.ndarray
    has_duration: np.ndarray
    duration_us: np.ndarray
    ref: np.ndarray
    """Scheduled start, int64 ns."""
    attrs: np.ndarray
    """Codes of the text pre-run attributes, columns as :attr:`RunIndex.attrs`."""
    attribute_names: tuple[str, ...]
    """The attributes of :attr:`attrs`' columns, in order."""

    @classmethod
    def of(cls, runs: RunIndex, cutoff: np.ndarray, config: FeatureConfig) -> VisibleRuns:
        """The slice of ``runs`` the ``cutoff`` s can see under ``config``."""
        span = timedelta_ns(config.lookback) + timedelta_ns(config.global_window)
        first, stop = np.searchsorted(runs.known, [int(cutoff.min()) - span, int(cutoff.max())])
        visible = slice(first, stop)
        failed, succeeded = runs.fail[visible], runs.succ[visible]
        return cls(
            known=runs.known[visible],
            flow=runs.flow[visible],
            failed=failed,
            succeeded=succeeded,
            labelled=failed | succeeded,
            version=runs.version[visible],
            params=runs.params[visible],
            has_duration=runs.has_dur[visible],
            duration_us=runs.dur_us[visible],
            ref=runs.ref[visible],
            attrs=runs.attrs[visible],
            attribute_names=tuple(runs.vocab.attributes)[: runs.attrs.shape[1]],
        )


@dataclass(frozen=True, slots=True)
class FlowWindows:
    """The visible rows of the targets' flows in ``(flow, known-at)`` order, and each target's windows there.

    For a target, its flow's rows known in ``[cutoff - lookback, cutoff)`` are positions
    ``[lookback_start, end)`` of :attr:`order`, those in the global window ``[window_start, end)``; rows of
    other flows are never in them, so only the targets' flows are sorted.
    """

    visible: VisibleRuns
    rows: np.ndarray
    """Positions in :attr:`visible` of the rows of the targets' flows, in known-at order."""
    distinct_known: np.ndarray
    """The distinct known-at times of :attr:`rows`, shared by every grouping of them."""
    order: np.ndarray
    """Positions in :attr:`visible` in ``(flow, known-at)`` order."""
    lookback_start: np.ndarray
    window_start: np.ndarray
    end: np.ndarray
    failures_before: np.ndarray
    """Cumulative failures along :attr:`order` (with a leading 0)."""
    by_flow: Grouped
    """The rows of :attr:`rows` grouped by flow: :meth:`flow_start` finds other windows in it."""

    @classmethod
    def of(cls, visible: VisibleRuns, targets: Targets, config: FeatureConfig) -> FlowWindows:
        """Sort the rows of the targets' flows and find every target's windows among them."""
        target_flows = np.unique(targets.flow)
        in_target_flows = (
            visible.flow == target_flows[0] if len(target_flows) == 1 else np.isin(visible.flow, target_flows)
        )
        rows = np.flatnonzero(in_target_flows)
        known = visible.known[rows]
        distinct_known = distinct(known)  # sorted already: one pass
        by_flow = Grouped(visible.flow[rows], known, distinct_known)
        order = rows[by_flow.order]
        cutoff = targets.cutoff
        return cls(
            visible=visible,
            rows=rows,
            distinct_known=distinct_known,
            order=order,
            lookback_start=by_flow.before(targets.flow, cutoff - timedelta_ns(config.lookback)),
            window_start=by_flow.before(targets.flow, cutoff - timedelta_ns(config.global_window)),
            end=by_flow.before(targets.flow, cutoff),
            failures_before=cumulative(visible.failed[order]),
            by_flow=by_flow,
        )

    def flow_start(self, targets: Targets, since: np.ndarray) -> np.ndarray:
        """Position in :attr:`order` of the target's flow's first row known at or after ``since``."""
        return self.by_flow.before(targets.flow, since)

    @property
    def run_count(self) -> np.ndarray:
        """Ended runs of the target's flow in its lookback."""
        return self.end - self.lookback_start

    def failures_since(self, start: np.ndarray) -> np.ndarray:
        """Failures of the target's flow from position ``start`` (a window's start) to its cutoff."""
        return self.failures_before[self.end] - self.failures_before[start]

    def last_differs(self, values: np.ndarray, target_values: np.ndarray) -> np.ndarray:
        """1.0 where the flow's last ended run in the lookback has another value than the target (0 with none)."""
        has_last = self.run_count > 0
        last = np.where(has_last, self.end - 1, 0)
        return (has_last & (take_or(values[self.order], last, -1) != target_values)).astype(np.float64)

    def grouped_with(self, values: np.ndarray, value_count: int) -> Grouped:
        """The rows of :attr:`rows` grouped by ``(flow, value)``; ``values`` are codes below ``value_count``."""
        keys = self.visible.flow[self.rows] * value_count + values[self.rows]
        return Grouped(keys, self.visible.known[self.rows], self.distinct_known)
