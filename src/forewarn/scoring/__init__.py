"""Live scoring: the current model, the prepared history and the scores of runs about to start.

Owns: the model registry (which model is installed, loaded once per process), the prepared-history cache
and its on-disk snapshot, and :func:`score_runs`, shared by the pre-run hook and the forecast. May import:
the store and the learning core, and the shared modules at the package root. Never Prefect: the Prefect
layer calls in here.

Example::

    >>> from forewarn.scoring import load_current_model
    >>> load_current_model("/nonexistent/models") is None     # no model installed: nothing to score with
    True
"""

from forewarn.scoring.live import HistoryCache, load_current_model, prediction_records, score_runs

__all__ = ["HistoryCache", "load_current_model", "prediction_records", "score_runs"]
