"""The ER experiment: reproducible figures, what each protection level buys, the chaos command."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.errors import ConfigurationError
from forewarn.resilience.experiment import (
    LEVELS,
    SCENARIOS,
    Scenario,
    percentile,
    run_configuration,
    run_experiment,
    wilson_interval,
)

TWENTY = Scenario("transient 20%", transient_rate=0.2)
OUTAGE = next(s for s in SCENARIOS if s.payment_outage)


class TestFigures:
    def test_the_same_seed_gives_the_same_figures(self) -> None:
        """Faults are seeded per run, time is virtual: a configuration replays exactly."""
        first = run_configuration(TWENTY, "+breaker", runs=300, seed=4)
        again = run_configuration(TWENTY, "+breaker", runs=300, seed=4)
        other = run_configuration(TWENTY, "+breaker", runs=300, seed=5)
        assert first == again and first.durations == again.durations
        assert first.durations != other.durations

    def test_no_faults_no_failures_and_no_er(self) -> None:
        """At 0% faults every run completes, five calls each, and ER is undefined."""
        result = run_configuration(Scenario("clean"), "retries", runs=200)
        assert (result.completed, result.faulted, result.attempts) == (200, 0, 1000)
        assert math.isnan(result.er)

    def test_each_level_helps_at_twenty_percent(self) -> None:
        """none < retries < full protection, and full protection completes at least 99.9% of 3,000 runs."""
        rates = {level: run_configuration(TWENTY, level, runs=3000, seed=0).success_rate for level in LEVELS}
        assert rates["none"] < 0.5 < rates["retries"] < rates["+hedging/failover"]
        assert rates["+hedging/failover"] >= 0.999

    def test_the_breaker_saves_calls_and_time_in_an_outage(self) -> None:
        """In the payment outage the breaker keeps success but cuts attempts and the median duration."""
        fallback = run_configuration(OUTAGE, "+fallback", runs=1000)
        breaker = run_configuration(OUTAGE, "+breaker", runs=1000)
        assert breaker.success_rate >= fallback.success_rate - 0.005
        assert breaker.attempts_per_run < fallback.attempts_per_run - 1
        assert breaker.p50 < fallback.p50 / 2

    def test_hedging_cuts_the_slow_tail(self) -> None:
        """With no faults at all, hedged copies cut p95 (10% of calls are 2 s slow)."""
        plain = run_configuration(Scenario("clean"), "+breaker", runs=1000)
        hedged = run_configuration(Scenario("clean"), "+hedging/failover", runs=1000)
        assert hedged.p95 < plain.p95 and hedged.attempts_per_run > plain.attempts_per_run

    def test_bad_arguments_name_themselves(self) -> None:
        """An unknown level or zero runs is a ConfigurationError naming the option."""
        with pytest.raises(ConfigurationError, match="level="):
            run_configuration(TWENTY, "everything", runs=10)
        with pytest.raises(ConfigurationError, match="runs="):
            run_configuration(TWENTY, "none", runs=0)

    def test_progress_sees_every_configuration(self) -> None:
        """run_experiment covers scenarios x levels, in order."""
        seen: list[tuple[str, str]] = []
        run_experiment(runs=5, scenarios=SCENARIOS[:2], progress=lambda r: seen.append((r.scenario, r.level)))
        assert seen == [(s.name, level) for s in SCENARIOS[:2] for level in LEVELS]


class TestStatistics:
    def test_wilson_interval_contains_the_rate_and_narrows(self) -> None:
        """The interval holds p and shrinks as runs grow."""
        low, high = wilson_interval(90, 100)
        low2, high2 = wilson_interval(900, 1000)
        assert low < 0.9 < high and high2 - low2 < high - low

    def test_percentile_matches_numpy(self) -> None:
        """Linear interpolation, as numpy.percentile's default."""
        import numpy as np

        values = [5.0, 1.0, 3.0, 2.0, 8.0, 13.0]
        for q in (0, 50, 95, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


class TestChaosCommand:
    def test_writes_the_table(self, tmp_path: Path) -> None:
        """forewarn chaos prints and writes one row per configuration."""
        out = tmp_path / "er.md"
        result = CliRunner().invoke(app, ["chaos", "--runs", "20", "--out", str(out)])
        assert result.exit_code == 0, result.output
        lines = out.read_text().splitlines()
        assert lines[0].startswith("| scenario | protection | runs | success rate |")
        assert len(lines) == 2 + len(SCENARIOS) * len(LEVELS)
        assert "| transient 20% | +hedging/failover | 20 |" in out.read_text()

    def test_rejects_a_plot_without_an_image_suffix_before_running(self, tmp_path: Path, normalize: Any) -> None:
        """A mistyped --plot is a usage error at once, not a traceback after the whole experiment ran."""
        out = tmp_path / "er.md"
        result = CliRunner().invoke(app, ["chaos", "--runs", "20", "--out", str(out), "--plot", "chaos.txt"])
        assert result.exit_code == 2 and "--plot" in result.output
        assert ".png, .svg, .pdf" in normalize(result.output)
        assert not out.exists()  # nothing ran

    def test_rejects_zero_runs(self) -> None:
        """--runs 0 is a usage error naming the option."""
        result = CliRunner().invoke(app, ["chaos", "--runs", "0"])
        assert result.exit_code == 2 and "--runs" in result.output
