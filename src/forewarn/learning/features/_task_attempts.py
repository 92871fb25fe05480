"""Task attempts that failed in the global window: of all flows, of the target's flow, per exception family.

Retries that eventually recover are the early smoke of an outage, so these count failed attempts, not runs.
An attempt counts from its own end, and an attempt of a run being described never before that run's
reference time: a target never sees its own attempts.
"""

from __future__ import annotations

import numpy as np

from forewarn.learning.features._columns import timedelta_ns
from forewarn.learning.features._sorted import Grouped, cumulative, first_positions
from forewarn.learning.features._view import Targets
from forewarn.learning.features.config import EXCEPTION_FAMILIES, FeatureConfig
from forewarn.learning.features.index import AttemptIndex
from forewarn.learning.features.vocabulary import Vocabulary

ATTEMPT_FEATURES: tuple[str, ...] = (
    "attempts_failed_window",
    "flow_attempts_failed_window",
    *(f"attempts_{family}_window" for family in EXCEPTION_FAMILIES),
)
"""The task-attempt features, all 0 when there are no attempts."""


def task_attempt_features(
    attempts: AttemptIndex | None, flows: Vocabulary, targets: Targets, config: FeatureConfig
) -> dict[str, np.ndarray]:
    """Failed attempts known in ``[cutoff - global_window, cutoff)``; ``flows`` is the runs' flow vocabulary."""
    counts = {name: np.zeros(len(targets.flow)) for name in ATTEMPT_FEATURES}
    if attempts is None or len(attempts) == 0 or len(targets.flow) == 0:
        return counts
    window = timedelta_ns(config.global_window)
    cutoff = targets.cutoff
    rows, known, flow = _failed_attempts(attempts, flows, targets)
    in_some_window = (known >= int(cutoff.min()) - window) & (known < int(cutoff.max()))
    if not in_some_window.any():
        return counts
    rows, known, flow = rows[in_some_window], known[in_some_window], flow[in_some_window]

    order = np.argsort(known, kind="stable")
    known_sorted = known[order]
    start = np.searchsorted(known_sorted, cutoff - window)
    end = np.searchsorted(known_sorted, cutoff)
    counts["attempts_failed_window"] = (end - start).astype(np.float64)
    families = attempts.families[rows][order]
    for column, family in enumerate(EXCEPTION_FAMILIES):
        of_family_before = cumulative(families[:, column])
        counts[f"attempts_{family}_window"] = (of_family_before[end] - of_family_before[start]).astype(np.float64)
    by_flow = Grouped(flow, known)
    own_flow = by_flow.before(targets.flow, cutoff) - by_flow.before(targets.flow, cutoff - window)
    counts["flow_attempts_failed_window"] = own_flow.astype(np.float64)
    return counts


def _failed_attempts(
    attempts: AttemptIndex, flows: Vocabulary, targets: Targets
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The failed attempts' rows, known-at times and flows in this build's codes (-1: a flow nothing has).

    An attempt of a run being described counts from that run's reference time, and belongs to that run's
    flow unless the attempt names its own.
    """
    rows = np.flatnonzero(attempts.failed)
    known = attempts.known[rows]
    to_build_code = np.asarray(
        [flows.code_of(name, targets.unseen_flows) for name in attempts.flows.names] + [-1], dtype=np.int64
    )
    flow = to_build_code[attempts.flow[rows]]
    target_at = first_positions(targets.ids, attempts.run[rows])
    of_target = target_at >= 0
    if of_target.any():
        known = known.copy()
        known[of_target] = np.maximum(attempts.end[rows][of_target], targets.reference[target_at[of_target]])
        flow_from_target = of_target & ~attempts.own_flow[rows]
        flow = np.where(flow_from_target, targets.flow[np.maximum(target_at, 0)], flow)
    return rows, known, flow
