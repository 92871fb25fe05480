"""Live scoring: the current model, the prepared history and the scores of runs about to start.

Owns: the model registry (which model is installed, loaded once per process), the prepared-history cache
and its on-disk snapshot, :func:`score_runs`, shared by the pre-run hook and the forecast, and live
monitoring of those scores. May import:
the store and the learning core, and the shared modules at the package root. Never Prefect: the Prefect
layer calls in here.

Modules:

* ``registry`` - the installed model: :func:`load_current_model`, its per-process cache, the feature check,
  the key that verifies it (:func:`configured_model_key`);
* ``cache`` - the prepared-history cache (:class:`HistoryCache`, :func:`history_cache`, :func:`read_history`);
* ``snapshot`` - the cache's stable rows in a file, so a new process starts warm;
* ``live`` - :func:`score_runs` and the tables and records made from its scores;
* ``notify`` - warn once per scheduled run: which forecast scores notify (``forecast_notifications``);
* ``monitor`` - :func:`~forewarn.scoring.monitor.monitor_store`: the live warnings against the runs'
  outcomes, drift against the installed model's training window, the retrain advice;
* ``exporter`` - Prometheus metrics read from the store per scrape (needs the ``metrics`` extra; imported
  on its own, never by this package).

Example::

    >>> from forewarn.scoring import load_current_model
    >>> load_current_model("/nonexistent/models") is None     # no model installed: nothing to score with
    True
"""

from forewarn.scoring.cache import HistoryCache, clear_history_caches, history_cache, read_history
from forewarn.scoring.live import SCORE_COLUMNS, TOP_REASONS, prediction_records, record_targets, score_runs
from forewarn.scoring.registry import (
    check_feature_schema,
    clear_model_cache,
    configured_model_key,
    current_manifest_path,
    feature_config_dict,
    feature_config_of,
    load_current_model,
)

__all__ = [
    "SCORE_COLUMNS",
    "TOP_REASONS",
    "HistoryCache",
    "check_feature_schema",
    "clear_history_caches",
    "clear_model_cache",
    "configured_model_key",
    "current_manifest_path",
    "feature_config_dict",
    "feature_config_of",
    "history_cache",
    "load_current_model",
    "prediction_records",
    "read_history",
    "record_targets",
    "score_runs",
]
