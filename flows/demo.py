"""`make demo`: run the example order flow many times with seeded faults, then report what happened.

Prefect runs in its ephemeral mode (a temporary local API, no server to set up, no network). Telemetry
goes to the embedded SQLite store named by FOREWARN_DB_URL (default ~/.local/share/forewarn/telemetry.db).

    python flows/demo.py --runs 40 --seed 7
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # keep the demo's output readable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console
from rich.progress import track

from forewarn.cli import print_report
from forewarn.report import reliability_report
from forewarn.settings import get_settings
from forewarn.store import TelemetryStore

console = Console()


def run_orders(n_runs: int, seed: int) -> tuple[int, int]:
    """Run the order flow n_runs times; a rough day every fifth order. Returns (completed, failed)."""
    from order_flow import process_order

    completed = failed = 0
    for i in track(range(n_runs), description="running orders", console=console):
        rough = i % 5 == 4
        state = process_order(
            order_id=f"D-{seed}-{i:04d}",
            amount=10.0 + i,
            seed=seed * 10_000 + i,
            transient_rate=0.45 if rough else 0.12,
            permanent_rate=0.03,
            return_state=True,
        )
        if state.is_completed():
            completed += 1
        else:
            failed += 1
    return completed, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40, help="order flow runs (default 40)")
    parser.add_argument("--seed", type=int, default=7, help="fault injection seed (default 7)")
    args = parser.parse_args(argv)
    logging.getLogger("prefect").setLevel(logging.ERROR)

    settings = get_settings()
    store = TelemetryStore(settings.db_url)
    started = datetime.now(timezone.utc)
    console.print(f"[bold]forewarn demo[/]: {args.runs} orders, seed {args.seed}, store {store.url}")
    completed, failed = run_orders(args.runs, args.seed)

    runs = store.runs(since=started)
    attempts = store.attempts(since=started)
    print_report(reliability_report(runs, attempts), title="this demo's runs")
    console.print(
        f"{completed} orders completed, {failed} failed (permanent faults such as a rejected order are "
        "not retried, by design)."
    )
    console.print(f"Telemetry is in [bold]{store.url}[/] ({len(attempts)} attempts recorded).")
    console.print(
        "Next: [bold].venv/bin/forewarn report[/] for all runs in the store; "
        "open notebooks/ to analyse them; see README.md for the failure-warning model."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
