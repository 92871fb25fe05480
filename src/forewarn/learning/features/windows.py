"""When each target is placed in time, and which span of history describing it needs.

A target's reference time is its scheduled start (its start time when there is none); its cutoff is that
minus the lead. :func:`history_window` is what a live scorer reads from the store so that a run scored
alone gets exactly its backtest features.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from forewarn.errors import FeatureSchemaError
from forewarn.learning.features._columns import NAT, lead_ns, require, run_reference_ns, text, timedelta_ns
from forewarn.learning.features.config import DEFAULT_CONFIG, FeatureConfig


def reference_times(targets: pd.DataFrame) -> np.ndarray:
    """Each target's scheduled start, else its start time, as int64 ns since the epoch (UTC).

    The time a run is placed at: its cutoff is this minus the lead. Raises
    :class:`~forewarn.errors.FeatureSchemaError` naming the runs that have neither.

    Example::

        >>> t = pd.DataFrame({"flow_run_id": ["r"], "scheduled_start": [pd.Timestamp("1970-01-01 00:00:01", tz="UTC")]})
        >>> reference_times(t).tolist()
        [1000000000]
    """
    if "scheduled_start" not in targets.columns and "start_time" not in targets.columns:
        raise FeatureSchemaError("targets need scheduled_start (or start_time) to place each run in time")
    ref = run_reference_ns(targets)
    if (ref == NAT).any():
        bad = ", ".join(map(repr, text(targets["flow_run_id"])[ref == NAT][:5]))
        raise FeatureSchemaError(
            f"target run(s) {bad} have neither scheduled_start nor start_time; give the "
            "scheduled start of an upcoming run"
        )
    return ref


def target_ids_and_times(targets: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The targets' run ids (text) and :func:`reference_times`, after checking the columns targets need.

    Example::

        >>> t = pd.DataFrame({"flow_run_id": [7], "flow_name": ["etl"],
        ...                   "scheduled_start": [pd.Timestamp("1970-01-01 00:00:01", tz="UTC")]})
        >>> ids, ref = target_ids_and_times(t)
        >>> ids.tolist(), ref.tolist()
        (['7'], [1000000000])
    """
    require(targets, ("flow_run_id", "flow_name"), "targets")
    ref = reference_times(targets)
    return text(targets["flow_run_id"]), ref


def history_window(
    targets: pd.DataFrame, *, lead: timedelta = timedelta(0), config: FeatureConfig = DEFAULT_CONFIG
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The ``[start, end)`` range of ``end_time`` a history must cover to describe ``targets`` exactly.

    Loading every run (of every flow) that ended in this range, and every task attempt that ended in
    ``[start + lookback, end)`` (with a ``flow_name`` column, since their runs may still be running), gives
    the same features as the full history. ``start`` is the earliest cutoff minus ``lookback`` minus
    ``global_window`` (co-failure partners look one window further back); ``end`` is the latest cutoff.

    Example::

        >>> t = pd.DataFrame({"flow_run_id": ["r"], "flow_name": ["etl"],
        ...                   "scheduled_start": [pd.Timestamp("2026-02-01", tz="UTC")]})
        >>> cfg = FeatureConfig(lookback=timedelta(days=1), global_window=timedelta(hours=1))
        >>> history_window(t, config=cfg)
        (Timestamp('2026-01-30 23:00:00+0000', tz='UTC'), Timestamp('2026-02-01 00:00:00+0000', tz='UTC'))
    """
    _, ref = target_ids_and_times(targets)
    return cutoff_window(ref - lead_ns(lead), config)


def cutoff_window(cutoffs: np.ndarray, config: FeatureConfig = DEFAULT_CONFIG) -> tuple[pd.Timestamp, pd.Timestamp]:
    """:func:`history_window` for cutoffs already known (int64 ns since the epoch, UTC).

    Example::

        >>> cfg = FeatureConfig(lookback=timedelta(days=1), global_window=timedelta(hours=1))
        >>> cutoff_window(np.array([pd.Timestamp("2026-02-01", tz="UTC").value]), cfg)[0]
        Timestamp('2026-01-30 23:00:00+0000', tz='UTC')
    """
    span = timedelta_ns(config.lookback) + timedelta_ns(config.global_window)
    return pd.Timestamp(int(cutoffs.min()) - span, tz="UTC"), pd.Timestamp(int(cutoffs.max()), tz="UTC")
