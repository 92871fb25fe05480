"""Leakage-free features that describe a flow run before it starts, from the history known at that moment.

For each target run the **cutoff** is ``scheduled_start - lead`` (``start_time`` when there is no scheduled
start). A history row is *known* at its ``end_time`` -- or at its own scheduled start if it ended before it
was scheduled, so a run can never see itself -- and only rows known strictly before the cutoff, and no
earlier than ``cutoff - lookback``, influence the target's features. Runs still going at the cutoff,
later runs, and the target's own ``end_time``/``state``/``start_time`` never do. Task attempts count from
their own ``end_time`` (again never before their run's scheduled start). The same rules hold whether one
run is described alone (live scoring) or 400,000 at once (backtests), and the two give identical values.

The package owns the feature definitions and the prepared history they are computed from:

- ``config``: the feature names, :class:`FeatureConfig` (how far back they look) and :class:`FeatureSpec`;
- ``labels`` and ``windows``: :func:`failure_labels`; each target's reference time and the history window
  that describes it exactly;
- ``vocabulary`` and ``index``: the prepared history, :class:`RunIndex` and :class:`AttemptIndex`;
- ``build``: :func:`build_features`, which calls one private module per feature family: the run's own
  attributes (``_run_attributes``), the flow's own history (``_flow_history``), the other flows
  (``_cross_flow``) and task attempts (``_task_attempts``).

Everything is vectorised: history rows are sorted once by ``(flow, known-at time)``, each target finds its
windows with :func:`numpy.searchsorted` on composite keys, and counts come from cumulative sums. The
feature list, and why each one should hold for real schedulers, is in ``docs/features.md``.

Example::

    >>> from forewarn.history.simulate import simulate_history, history_to_runs_frame
    >>> runs = history_to_runs_frame(simulate_history(3_000, seed=0))
    >>> X = build_features(runs)
    >>> X.index.name, len(X) == len(runs)
    ('flow_run_id', True)
    >>> spec = feature_spec(X)
    >>> BASELINE_LAST_FAILED in spec.numeric, "flow_name" in spec.categorical
    (True, True)
"""

from forewarn.learning.features._attribute_history import is_attribute_history_feature
from forewarn.learning.features._columns import NONE
from forewarn.learning.features.build import build_features
from forewarn.learning.features.config import (
    BASELINE_LAST_FAILED,
    BASELINE_SMOOTHED_RATE,
    CATEGORICAL_FEATURES,
    EXCEPTION_FAMILIES,
    NUMERIC_FEATURES,
    FeatureConfig,
    FeatureSpec,
    feature_spec,
)
from forewarn.learning.features.index import AttemptIndex, RunIndex
from forewarn.learning.features.labels import failure_labels
from forewarn.learning.features.vocabulary import RunVocabulary, Vocabulary
from forewarn.learning.features.windows import cutoff_window, history_window, reference_times
from forewarn.records import FAILURE_STATES

__all__ = [
    "BASELINE_LAST_FAILED",
    "BASELINE_SMOOTHED_RATE",
    "CATEGORICAL_FEATURES",
    "EXCEPTION_FAMILIES",
    "FAILURE_STATES",
    "NONE",
    "NUMERIC_FEATURES",
    "FeatureConfig",
    "AttemptIndex",
    "FeatureSpec",
    "RunIndex",
    "RunVocabulary",
    "Vocabulary",
    "build_features",
    "cutoff_window",
    "failure_labels",
    "reference_times",
    "feature_spec",
    "history_window",
    "is_attribute_history_feature",
]
