"""CPU per call of the bare attempt loop (no recorder, no Prefect): this checkout against an older commit's.

The attempt loop gained failover providers and redundant copies; this measures what that costs a task
without either, the success path, in CPU time, the two versions alternating in one process::

    git show a055be5:src/forewarn/resilience/attempts.py > /tmp/old_attempts.py
    PYTHONPATH=src .venv/bin/python bench/attempt_loop.py /tmp/old_attempts.py
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time

from forewarn.resilience.attempts import AttemptRunner
from forewarn.resilience.retry import RetryPolicy


def load_old(path: str) -> type[AttemptRunner]:
    spec = importlib.util.spec_from_file_location("old_attempts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_attempts"] = module
    spec.loader.exec_module(module)
    return module.AttemptRunner  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="path of the older attempts.py")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=6)
    options = parser.parse_args()
    policy = RetryPolicy(attempts=3, wait_jitter=0)
    runners = {
        "before": load_old(options.old)("t", policy, sink=lambda r: None),
        "after": AttemptRunner("t", policy, sink=lambda r: None),
    }
    micros: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(options.rounds):
        for name, runner in runners.items():
            start = time.process_time()
            for _ in range(options.calls):
                runner.run(abs, (1,), {}, task_run_id="t", flow_run_id="f")
            micros[name].append((time.process_time() - start) / options.calls * 1e6)
    for name, values in micros.items():
        print(f"{name}: median {statistics.median(values):.2f} us per call ({', '.join(f'{v:.2f}' for v in values)})")
    print(f"after / before: {statistics.median(micros['after']) / statistics.median(micros['before']):.2f}")


if __name__ == "__main__":
    main()
