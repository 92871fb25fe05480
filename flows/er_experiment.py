"""The ER experiment as a flow: every configuration on the virtual clock, plus one real-Prefect cross-check.

The table (``forewarn chaos`` computes the same) runs forewarn's attempt loop without a Prefect server,
thousands of runs per configuration. The cross-check runs the real example flow
(``flows/order_flow.py``: Prefect task runs, telemetry through the spool into a store) ``prefect_runs``
times at 20 % transient faults per call, waits zeroed with ``forewarn.set_testing``, and reads success
rate and ER back from the store with ``forewarn.reliability_report``. Its protection is the table's
``+fallback`` level (4 attempts, the secondary gateway, the notification queue), so the two success rates
should agree within their intervals.

Run it (about two minutes; the cross-check writes to a temporary store, not to FOREWARN_DB_URL)::

    python flows/er_experiment.py --runs 10000 --prefect-runs 300
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def cross_check(prefect_runs: int, seed: int) -> dict[str, Any]:
    """Run the real order flow ``prefect_runs`` times at 20 % transient faults; its figures from the store."""
    sys.path.insert(0, str(HERE))
    import order_flow  # the example flow lives beside this file, not in the package

    import forewarn
    from forewarn.orchestration.recorder import default_recorder
    from forewarn.resilience.experiment import wilson_interval
    from forewarn.settings import get_settings

    states = []
    with forewarn.set_testing(True):  # backoff waits take no time, as on the virtual clock
        for i in range(prefect_runs):
            state = order_flow.process_order(
                order_id=f"X-{i}",
                seed=seed * 1_000_003 + i,
                transient_rate=0.2,
                permanent_rate=0.0,
                return_state=True,
            )
            states.append(state)
    recorder = default_recorder()
    if recorder is not None:
        recorder.flush()
    ids = {str(s.state_details.flow_run_id) for s in states}
    with forewarn.TelemetryStore(get_settings().db_url) as store:
        runs = store.runs(flow_name="process-order")
        attempts = store.attempts(flow_name="process-order")
    runs = runs[runs["flow_run_id"].isin(ids)]
    report = forewarn.reliability_report(runs, attempts).loc["ALL"]
    completed = sum(s.is_completed() for s in states)
    return {
        "runs": prefect_runs,
        "completed": completed,
        "interval": wilson_interval(completed, prefect_runs),
        "store_runs": int(report["runs"]),
        "store_success_rate": float(report["success_rate"]),
        "ER": float(report["ER"]),
        "attempts_per_run": (len(attempts[attempts["flow_run_id"].isin(ids)]) / prefect_runs),
    }


def er_experiment(runs: int = 10_000, seed: int = 0, prefect_runs: int = 300) -> tuple[str, dict[str, Any]]:
    """The experiment's markdown table and the Prefect cross-check's figures."""
    from prefect import flow

    from forewarn.resilience.experiment import markdown_table, run_experiment

    @flow(name="er-experiment")
    def experiment() -> tuple[str, dict[str, Any]]:
        table = markdown_table(run_experiment(runs=runs, seed=seed))
        return table, cross_check(prefect_runs, seed)

    return experiment()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefect-runs", type=int, default=300)
    options = parser.parse_args()
    store_dir = tempfile.mkdtemp(prefix="forewarn-er-")
    os.environ["FOREWARN_DB_URL"] = f"sqlite:///{store_dir}/er.db"
    os.environ["FOREWARN_SPOOL_DIR"] = ""  # write straight to the temporary store
    table, check = er_experiment(options.runs, options.seed, options.prefect_runs)
    print(table)
    low, high = check["interval"]
    print(
        f"\nPrefect cross-check (order flow, 20% transient, +fallback): {check['completed']}/{check['runs']} "
        f"completed = {check['completed'] / check['runs']:.2%} (95% {low:.2%} to {high:.2%}); from the store: "
        f"{check['store_runs']} runs, success rate {check['store_success_rate']:.2%}, ER {check['ER']:.1%}, "
        f"{check['attempts_per_run']:.2f} attempts per run"
    )


if __name__ == "__main__":
    main()
