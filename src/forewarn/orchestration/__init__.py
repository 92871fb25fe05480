"""The Prefect layer: the only code that imports Prefect.

Owns: ``forewarn.task`` and ``forewarn.flow`` (Prefect task and flow decorators over the resilience
layer), the telemetry recorder they write through, the filter that masks secrets in their run logs, the
pre-run warning hook and the forecast of scheduled runs. May import: everything below it (resilience,
store, scoring, learning, the shared root modules) and Prefect. The CLI and ``flows/`` sit above it.

This ``__init__`` stays light on purpose: ``forewarn.flow`` must not load pandas or scikit-learn before a
model is installed, so the forecast (which scores with them) is imported from
:mod:`forewarn.orchestration.forecast` itself.

Example::

    >>> from forewarn.orchestration import task
    >>> @task(retries=2)
    ... def ping() -> str:
    ...     return "pong"
    >>> ping.fn()
    'pong'
"""

from forewarn.orchestration.flows import flow
from forewarn.orchestration.log_redaction import RedactingFilter, install_log_redaction
from forewarn.orchestration.tasks import task
from forewarn.orchestration.warning import warn_before_run

__all__ = ["RedactingFilter", "flow", "install_log_redaction", "task", "warn_before_run"]
