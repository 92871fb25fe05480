"""`make demo`: forewarn end to end on the embedded SQLite store, offline, in about two minutes.

1. Runs the example order flow many times with seeded fault injection: every task attempt and flow run is
   recorded, and the report shows runs, retries, fallbacks and ER.
2. Brings in history to learn from: a few dozen order runs are too few to train on, so the demo imports
   a simulated multi-flow history (`forewarn simulate` + `forewarn import-runs`) into the same store.
3. Trains the failure-warning model with a walk-forward backtest (WR, precision, PR-AUC against two
   baselines, all on runs the model never trained on) and saves it under FOREWARN_MODEL_DIR.
4. A payment outage: orders keep failing, and each `forewarn.flow` run scores itself before it starts on
   what the store knew then, until forewarn warns about one and says why (the reasons, the artifact and
   the event it emitted).

Prefect runs in its ephemeral mode (a temporary local API, no server to set up, no network). The demo
store is `.forewarn/demo.db` in this directory unless FOREWARN_DB_URL says otherwise, so simulated
history never mixes with your real telemetry.

    python flows/demo.py --runs 40 --seed 7
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")  # the demo prints its own summary
# Prefect starts its ephemeral API server on the first flow run and waits 20 s for it by default; in a fresh
# virtual environment on a small machine that first start (compiling Prefect's server modules) takes longer
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("FOREWARN_DB_URL", f"sqlite:///{ROOT / '.forewarn' / 'demo.db'}")
# the demo's models and their signing key stay in the checkout, apart from a real installation's
os.environ.setdefault("FOREWARN_MODEL_DIR", str(ROOT / "models"))
os.environ.setdefault("FOREWARN_MODEL_KEY_FILE", str(ROOT / ".forewarn" / "model.key"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402

from forewarn.cli import print_report  # noqa: E402
from forewarn.learning.features import failure_labels  # noqa: E402
from forewarn.learning.report import reliability_report  # noqa: E402
from forewarn.settings import get_settings  # noqa: E402
from forewarn.store.telemetry import TelemetryStore  # noqa: E402

console = Console()
MIN_HISTORY_RUNS = 5_000


def run_orders(n_runs: int, seed: int, first: int = 0) -> tuple[int, int]:
    """Run the order flow n_runs times; a rough day every fifth order. Returns (completed, failed)."""
    from order_flow import process_order

    completed = failed = 0
    for i in track(range(first, first + n_runs), description="running orders", console=console):
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


def ensure_history(store: TelemetryStore, seed: int) -> None:
    """Import a simulated history when the store has too little to learn from."""
    from forewarn.history.importer import import_attempts, import_runs
    from forewarn.history.simulate import simulate_history, simulated_attempts

    labelled = int(failure_labels(store.runs()).notna().sum())
    if labelled >= MIN_HISTORY_RUNS:
        console.print(f"The store already holds {labelled:,} finished runs to learn from.")
        return
    with tempfile.TemporaryDirectory() as tmp:
        history = simulate_history(20_000, seed=seed)
        runs_csv, attempts_csv = Path(tmp) / "runs.csv", Path(tmp) / "attempts.csv"
        history.to_csv(runs_csv, index=False)
        simulated_attempts(history, seed=seed).to_csv(attempts_csv, index=False)
        result = import_runs(store, runs_csv)
        import_attempts(store, attempts_csv)
    console.print(
        f"Imported {result.imported:,} simulated runs of 12 flows (dependency outages, maintenance windows, "
        "input-size limits, bad deploys, load peaks) to learn from: `forewarn simulate` makes the same."
    )


def train(store: TelemetryStore) -> None:
    from forewarn.cli import print_metrics
    from forewarn.learning.summary import metrics_rows
    from forewarn.learning.training import train_and_save
    from forewarn.scoring import configured_model_key

    runs, attempts = store.history()
    settings = get_settings()
    for folder in (settings.model_dir, settings.model_key_file.parent):
        _not_writable_by_others(Path(folder))
    with console.status("training: walk-forward backtest, then the final model"):
        key = configured_model_key(create=True, model_dir=settings.model_dir)
        result = train_and_save(runs, attempts, model_dir=settings.model_dir, key=key, n_folds=4)
    manifest = result.manifest
    print_metrics(metrics_rows(manifest.backtest_metrics or {}), "failure warning, held-out runs")
    console.print(f"Model {manifest.version} saved to {result.path} (threshold {manifest.threshold:.3f}).")


def show_warnings(store: TelemetryStore, seed: int, first: int, max_orders: int = 12) -> bool:
    """Orders score themselves while the payment gateway has an outage, until forewarn warns about one.

    Every order during the outage is rejected, so the recent failures of ``process-order`` pile up in the
    store; each next run's pre-run hook scores it on that history. Returns whether a warning was shown.
    """
    from order_flow import process_order

    console.print(
        "The payment gateway starts rejecting every charge. Each order scores itself before it starts, "
        "on what the store knew at that moment:"
    )
    for i in range(first, first + max_orders):
        since = datetime.now(timezone.utc)
        process_order(
            order_id=f"D-{seed}-{i:04d}", amount=10.0 + i, seed=seed * 10_000 + i,
            transient_rate=0.0, permanent_rate=1.0, return_state=True,
        )
        scored = store.predictions(since=since)
        if scored.empty:
            console.print("  (no score: the pre-run hook found no model)")
            return False
        row = scored.iloc[-1]
        verdict = "[bold red]AT RISK[/]" if row.warned else "ok"
        console.print(f"  order D-{seed}-{i:04d}: risk {row.risk:.3f} (threshold {row.threshold:.3f}) {verdict}")
        if row.warned:
            reasons = json.loads(row.reasons) if isinstance(row.reasons, str) else list(row.reasons)
            for reason in reasons:
                console.print(f"    because {reason}")
            console.print(
                "  The warning went to the run's log, to the store's predictions table, as "
                "the markdown artifact `forewarn-risk` on the flow run and as the Prefect event "
                "`forewarn.run.at-risk`: with `prefect server start`, see Artifacts and Event Feed in the UI."
            )
            return True
    console.print(f"  no warning after {max_orders} failed orders: no risk above the threshold.")
    return False


def _not_writable_by_others(folder: Path) -> None:
    """Create ``folder``, or take group and others' write permission from it (``chmod go-w``).

    A checkout made under umask 002 leaves ``models/`` group-writable, and forewarn refuses to save or load a
    model where someone else could swap it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    mode = folder.stat().st_mode
    if mode & 0o022:
        folder.chmod(mode & ~0o022)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40, help="order flow runs (default 40)")
    parser.add_argument("--seed", type=int, default=7, help="fault injection seed (default 7)")
    parser.add_argument("--no-model", action="store_true", help="stop after the telemetry report")
    args = parser.parse_args(argv)
    logging.getLogger("prefect").setLevel(logging.CRITICAL)

    settings = get_settings()
    store = TelemetryStore(settings.db_url)
    started = datetime.now(timezone.utc)
    console.rule("[bold]1. fault-tolerant order flow, seeded faults")
    console.print(f"{args.runs} orders, seed {args.seed}, store {store.url}")
    completed, failed = run_orders(args.runs, args.seed)
    runs = store.runs(since=started)
    attempts = store.attempts(since=started)
    print_report(reliability_report(runs, attempts), title="this demo's order runs")
    console.print(
        f"{completed} orders completed, {failed} failed: permanent faults (a rejected order) are not retried, "
        f"by design. {len(attempts)} attempts recorded."
    )

    if not args.no_model:
        console.rule("[bold]2. history to learn from")
        ensure_history(store, args.seed)
        console.rule("[bold]3. train and backtest the failure-warning model")
        train(store)
        console.rule("[bold]4. orders that score themselves before they start")
        show_warnings(store, args.seed, first=args.runs)

    console.rule("[bold]next")
    console.print(f"export FOREWARN_DB_URL={store.url}", soft_wrap=True)
    console.print(  # the demo's model and key, so that train, forecast and monitor find them too
        f"export FOREWARN_MODEL_DIR={settings.model_dir} FOREWARN_MODEL_KEY_FILE={settings.model_key_file}",
        soft_wrap=True,
    )
    console.print(".venv/bin/forewarn report       # all runs in the demo store, per flow")
    console.print(".venv/bin/forewarn backtest     # WR, precision, lead time, ER vs two baselines")
    console.print("notebooks/backtest_report.ipynb # the same, with plots")
    console.print("README.md: use forewarn.task / forewarn.flow in your own flows; prefect.yaml deploys them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
