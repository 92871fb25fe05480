"""Run histories from outside: CSV import into the store, and the simulated history for demos and tests.

Owns: the import formats and their validation (``importer``) and the seeded simulator (``simulate``).
May import: the store and the shared modules at the package root. Never Prefect or scikit-learn.

Example::

    >>> from forewarn.history import simulate_history
    >>> runs = simulate_history(n_runs=50, seed=1)
    >>> len(runs)
    50
"""

from forewarn.history.importer import import_attempts, import_runs
from forewarn.history.simulate import simulate_history, simulated_attempts, write_simulated_history

__all__ = ["import_attempts", "import_runs", "simulate_history", "simulated_attempts", "write_simulated_history"]
