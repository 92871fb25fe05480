"""How far a trace's warnings could go with one thing no scheduler knows: a leaky ceiling, never a model.

Issue 9 asks for PR-AUC at least 1.2x the better baseline on each trace. On KTH (flows are users) a fifth of
the runs come less than a minute after the user's previous submission, which has almost never ended by then,
though the two outcomes go together. The cutoff rule hides that outcome (it is not known at submission).
This bench adds it anyway, as one **leaky** column -- the outcome of the flow's previous submission when that
run was still going at the cutoff, -1 otherwise -- and runs the same walk-forward backtest as
``bench/traces.py`` with and without it. If even that answer lifts a trace only a little, the trace's
submissions do not carry much more than the model already finds (docs/model.md, "How far KTH can go").

    .venv/bin/python bench/traces_ceiling.py --cache /tmp/traces            # KTH and CTC, family hgb
    .venv/bin/python bench/traces_ceiling.py --only KTH --family stack
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from traces import DEFAULT_TRACES, label_of, load_runs  # the bench folder is not a package

LEAK = "leak_previous_submission_outcome"


def leaky_column(runs: pd.DataFrame, y: np.ndarray, sched: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The outcome (1 failed, 0 not) of the flow's previous submission if it had not ended by this run's
    scheduled start, else -1. ``runs`` are the labelled runs in scheduled order, ``y``/``sched``/``end`` theirs.

        >>> runs = pd.DataFrame({"flow_name": ["a", "a", "a"]})
        >>> leaky_column(runs, np.array([1, 0, 1]), np.array([0, 5, 20]), np.array([10, 15, 30])).tolist()
        [-1.0, 1.0, -1.0]
    """
    flows = runs["flow_name"].to_numpy()
    previous = pd.Series(y.astype(float)).groupby(flows).shift(1).to_numpy()
    previous_end = pd.Series(end.astype(float)).groupby(flows).shift(1).to_numpy()
    running = np.isfinite(previous) & (previous_end >= sched)
    return np.where(running, previous, -1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=["KTH", "CTC"], help="Traces: CTC LANL KTH.")
    parser.add_argument("--family", default="hgb")
    parser.add_argument("--cache", type=Path, default=None, help="Stores kept by bench/traces.py --cache.")
    args = parser.parse_args()

    from forewarn.learning.backtest import prepare_history, walk_forward_backtest

    for name in [n for n in DEFAULT_TRACES if label_of(n) in args.only]:
        runs, _ = load_runs(name, args.cache, 0)
        prep = prepare_history(runs)
        leak = leaky_column(prep.runs, prep.y, prep.sched, prep.end)
        leaky = dataclasses.replace(prep, X=prep.X.assign(**{LEAK: leak}))
        for label, prepared in (("as built", prep), ("with the leak", leaky)):
            result = walk_forward_backtest(runs, prepared=prepared, family=args.family)
            model = result.overall["model"]["pr_auc"]
            best = max(result.overall[s]["pr_auc"] for s in ("last_failed", "smoothed_rate"))
            print(f"{label_of(name):5s} {args.family:6s} {label:14s} PR-AUC {model:.3f} ({model / best:.3f}x)")


if __name__ == "__main__":
    main()
