"""OpenMP for scikit-learn's fits: threads that sleep while they wait, and how many threads a fit takes.

HistGradientBoosting parallelises a fit with OpenMP. GNU OpenMP's threads *spin* while they wait for each
other by default, which on a machine whose cores are busy with other work turns a second thread into a
loss: a 200,000-row fit took 14x the CPU time and 11x the wall time on two threads at load 10 on two
cores. With ``OMP_WAIT_POLICY=PASSIVE`` the waiting threads sleep instead: two threads took the CPU time
of one and half its wall time, at load 15-20 as on an idle machine. The runtime reads the variable once,
when it is loaded (with scikit-learn's compiled modules), so it is set here, before forewarn imports
scikit-learn, and only if you have not set it yourself.

Example::

    >>> fit_thread_count(None, cpus=2, load=0.4, passive=False), fit_thread_count(None, cpus=2, load=9.0, passive=False)
    (2, 1)
    >>> fit_thread_count(None, cpus=2, load=9.0, passive=True), fit_thread_count(3, cpus=2, load=9.0, passive=False)
    (2, 3)
"""

from __future__ import annotations

import math
import os
import sys

_POLICY_VARIABLE = "OMP_WAIT_POLICY"
_LOADED_BEFORE = "sklearn" in sys.modules  # then its OpenMP runtime has read the variable already
if not _LOADED_BEFORE:
    os.environ.setdefault(_POLICY_VARIABLE, "PASSIVE")

PASSIVE_WAITING = os.environ.get(_POLICY_VARIABLE, "").strip().upper() == "PASSIVE" and not _LOADED_BEFORE
"""Whether OpenMP threads in this process sleep while they wait (scikit-learn loaded after the variable was set)."""


def fit_thread_count(
    fit_threads: int | None,
    *,
    cpus: int | None = None,
    load: float | None = None,
    passive: bool = PASSIVE_WAITING,
) -> int:
    """The OpenMP threads a fit uses: ``fit_threads``, or for ``None`` as many as help.

    ``None``: every core of this process (its CPU affinity) when waiting threads sleep (``passive``);
    otherwise the cores the rest of the machine leaves idle, that is the cores less the 1-minute load
    average other processes make (``load - 1``: the load counts this process), at least 1, because
    spinning threads on busy cores slow a fit down several times. Where the load is unknown (Windows),
    every core.
    """
    if fit_threads is not None:
        return fit_threads
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if passive:
        return cpus
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return cpus
    return max(1, min(cpus, math.floor(cpus - load + 1.0)))


__all__ = ["PASSIVE_WAITING", "fit_thread_count"]
