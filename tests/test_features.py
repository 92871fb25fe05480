"""Specification of forewarn.learning.features: what a run's features may see, and exactly what they are."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forewarn.errors import ConfigurationError, FeatureSchemaError
from forewarn.history.simulate import (
    history_to_attempts_frame,
    history_to_runs_frame,
    parameters_hash,
    simulate_history,
    simulated_attempts,
)
from forewarn.learning import _pandas_fast
from forewarn.learning.features import (
    BASELINE_LAST_FAILED,
    BASELINE_SMOOTHED_RATE,
    CATEGORICAL_FEATURES,
    EXCEPTION_FAMILIES,
    NONE,
    NUMERIC_FEATURES,
    AttemptIndex,
    FeatureConfig,
    FeatureSpec,
    RunIndex,
    Vocabulary,
    build_features,
    failure_labels,
    feature_spec,
    history_window,
)

T0 = pd.Timestamp("2026-03-02 00:00", tz="UTC")  # a Monday
H = pd.Timedelta(hours=1)
M = pd.Timedelta(minutes=1)
ENGINEERED = list(CATEGORICAL_FEATURES) + list(NUMERIC_FEATURES)


def run(
    rid: str,
    flow: str,
    hour: float,
    state: str = "COMPLETED",
    *,
    minutes: float = 5,
    delay: float = 0,
    version: str | None = "1",
    params: dict | None = None,
    **features: object,
) -> dict:
    """One runs-frame row: scheduled ``hour`` hours after T0, started ``delay`` and lasting ``minutes``."""
    sched = T0 + hour * H
    start = sched + delay * M if state != "SCHEDULED" else pd.NaT
    end = start + minutes * M if state not in ("RUNNING", "SCHEDULED") else pd.NaT
    params = {"n": 1} if params is None else params
    row = {
        "flow_run_id": rid,
        "flow_name": flow,
        "deployment": f"{flow}/prod",
        "parameters": params,
        "parameters_hash": parameters_hash(params),
        "flow_version": version,
        "scheduled_start": sched,
        "start_time": start,
        "end_time": end,
        "state": state,
    }
    row.update({f"feature_{k}": v for k, v in features.items()})
    return row


def frame(*rows: dict) -> pd.DataFrame:
    """A runs frame with the contract's dtypes."""
    df = pd.DataFrame(list(rows))
    for col in ("scheduled_start", "start_time", "end_time"):
        df[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[ns, UTC]")
    for col in ("flow_run_id", "flow_name", "deployment", "parameters_hash", "flow_version", "state"):
        df[col] = df[col].astype(object)
    return df


def attempt(rid: str, end: pd.Timestamp, outcome: str = "failure", exc: str | None = "ValueError") -> dict:
    return {
        "flow_run_id": rid,
        "task_name": "t",
        "attempt": 1,
        "start_time": end - M,
        "end_time": end,
        "outcome": outcome,
        "exception_type": exc,
    }


def one(targets: pd.DataFrame, history: pd.DataFrame | None = None, **kw: object) -> pd.Series:
    """The features of the single target in ``targets``."""
    out = build_features(targets, history, **kw)
    assert len(out) == 1
    return out.iloc[0]


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A simulated runs frame (about 12 days) and its task attempts."""
    raw = simulate_history(5_000, seed=11, include_cause=True)
    runs = history_to_runs_frame(raw.drop(columns="failure_cause"))
    attempts = history_to_attempts_frame(simulated_attempts(raw, seed=11))
    return runs, attempts


# --- a brute-force reference: the definitions in docs/features.md, one target at a time ------------------


def _known(df: pd.DataFrame) -> pd.Series:
    ref = df["scheduled_start"].fillna(df["start_time"])
    return pd.concat([df["end_time"], ref], axis=1).max(axis=1, skipna=False).where(df["end_time"].notna())


def reference(
    target: pd.Series, history: pd.DataFrame, attempts: pd.DataFrame | None, lead: timedelta, cfg: FeatureConfig
) -> dict[str, float]:
    """Every engineered numeric feature of one target, computed directly from its definition."""
    ref = target["scheduled_start"] if pd.notna(target["scheduled_start"]) else target["start_time"]
    c = ref - lead
    L, W, R, k = cfg.lookback, cfg.global_window, cfg.recent_runs, cfg.prior_strength
    h = history.assign(known=_known(history))
    h = h[h["known"].notna()]
    seen = h[(h["known"] < c) & (h["known"] >= c - L)]
    seen = seen.assign(ref=seen["scheduled_start"].fillna(seen["start_time"]))
    seen = seen.sort_values(["known", "ref", "flow_run_id"])
    fail = seen["state"].isin(["FAILED", "CRASHED", "TIMEDOUT"])
    succ = seen["state"] == "COMPLETED"
    lab = seen[fail | succ]
    g = fail.sum() / len(lab) if len(lab) else 0.0
    mine = seen[seen["flow_name"] == target["flow_name"]]
    mlab = mine[mine["state"].isin(["FAILED", "CRASHED", "TIMEDOUT", "COMPLETED"])]
    mfail = mlab["state"] != "COMPLETED"
    n_lab, n_fail = len(mlab), int(mfail.sum())
    smoothed = (n_fail + k * g) / (n_lab + k) if n_lab + k > 0 else g
    outcomes = mfail.tolist()
    last_success = max((i for i, f in enumerate(outcomes) if not f), default=-1)
    last_failure = max((i for i, f in enumerate(outcomes) if f), default=-1)
    fail_streak = len(outcomes) - (last_success + 1)
    succ_streak = len(outcomes) - (last_failure + 1)
    recent = outcomes[-R:]
    last_fail = mlab.loc[mfail, "known"]
    hours = min((c - last_fail.iloc[-1]) / H, L / H) if len(last_fail) else L / H
    done = mine[(mine["state"] == "COMPLETED") & mine["start_time"].notna()]
    dur = (done["end_time"] - done["start_time"]).to_numpy().astype("timedelta64[ns]").astype(np.int64)
    dur = dur // 1000  # whole microseconds
    if len(dur):
        m3, mr = dur[-3:], dur[-R:]
        trend = (m3.sum() / len(m3)) / (mr.sum() / len(mr)) if mr.sum() > 0 else 1.0
    else:
        trend = 1.0
    ver = target["flow_version"] if pd.notna(target["flow_version"]) else NONE
    mver = mine["flow_version"].fillna(NONE)
    v = mine[mver == ver]
    vlab = v[v["state"].isin(["FAILED", "CRASHED", "TIMEDOUT", "COMPLETED"])]
    vfail = int((vlab["state"] != "COMPLETED").sum())
    vrate = (vfail + k * smoothed) / (len(vlab) + k) if len(vlab) + k > 0 else smoothed
    ph = target["parameters_hash"] if pd.notna(target["parameters_hash"]) else NONE
    mph = mine["parameters_hash"].fillna(NONE)

    win = seen[seen["known"] >= c - W]
    wfail = win["state"].isin(["FAILED", "CRASHED", "TIMEDOUT"])
    wlab = win["state"].isin(["FAILED", "CRASHED", "TIMEDOUT", "COMPLETED"])
    w_rate = wfail.sum() / wlab.sum() if wlab.sum() else g
    others = win[wfail & (win["flow_name"] != target["flow_name"])]

    # co-failure events (A = the target's flow, B): A failures known in [c-L, c) with a B failure in the
    # global window before them
    fails_all = h[h["state"].isin(["FAILED", "CRASHED", "TIMEDOUT"])]
    a_fail_times = mine.loc[mine["state"].isin(["FAILED", "CRASHED", "TIMEDOUT"]), "known"]
    partner = 0.0
    for b in others["flow_name"]:
        b_times = fails_all.loc[fails_all["flow_name"] == b, "known"].to_numpy()
        partner += sum(bool(((b_times >= t - W) & (b_times < t)).any()) for t in a_fail_times.to_numpy())
    partner /= n_fail + 1.0

    att = {"all": 0, "flow": 0, **{f: 0 for f in EXCEPTION_FAMILIES}}
    if attempts is not None and len(attempts):
        a = attempts[attempts["outcome"].isin(["failure", "timeout"])]
        runs_all = pd.concat([target.to_frame().T, history]).drop_duplicates("flow_run_id")
        runs_all = runs_all.set_index("flow_run_id")
        run_ref = runs_all["scheduled_start"].fillna(runs_all["start_time"])
        known = pd.concat([a["end_time"], a["flow_run_id"].map(run_ref)], axis=1).max(axis=1)
        a = a[(known >= c - W) & (known < c)]
        att["all"] = len(a)
        att["flow"] = int((a["flow_run_id"].map(runs_all["flow_name"]) == target["flow_name"]).sum())
        for family, pattern in EXCEPTION_FAMILIES.items():
            rx = re.compile(pattern, re.IGNORECASE)
            hit = a["exception_type"].fillna("").map(lambda e, rx=rx: bool(rx.search(e)))
            att[family] = int((hit | ((a["outcome"] == "timeout") & (family == "timeout"))).sum())

    lh = L / H
    since_end = min((c - mine["known"].iloc[-1]) / H, lh) if len(mine) else lh
    recent_known = mine["known"].iloc[-R:]
    has_gap = len(recent_known) > 1
    gap = max((recent_known.iloc[-1] - recent_known.iloc[0]) / H / (len(recent_known) - 1), 1 / 60) if has_gap else lh
    cadence = {
        "flow_hours_since_end": since_end,
        "flow_usual_gap_hours": gap,
        "flow_gap_ratio": since_end / gap if has_gap else 1.0,
        "flow_failure_gap_ratio": hours / gap if has_gap and hours < lh else 1.0,
        "flow_runs_ended_hour": int((mine["known"] >= c - H).sum()),
    }
    relative = {}
    for column in [n for n in history.columns if n.startswith("feature_") and history[n].dtype.kind in "if"]:
        values = mine[column].dropna().iloc[-R:]
        usual = values.mean() if len(values) else np.nan
        value = float(target[column]) if pd.notna(target[column]) else np.nan
        usable = not np.isnan(value) and not np.isnan(usual) and usual != 0
        relative[f"{column.removeprefix('feature_')}_to_flow_usual"] = value / usual if usable else 1.0

    hour = ref.hour + ref.minute / 60 + ref.second / 3600 + ref.microsecond / 3.6e9 + ref.nanosecond / 3.6e12
    dow = ref.day_of_week
    last = mine.iloc[-1] if len(mine) else None
    return {
        "hour_sin": np.sin(2 * np.pi * hour / 24),
        "hour_cos": np.cos(2 * np.pi * hour / 24),
        "dow_sin": np.sin(2 * np.pi * dow / 7),
        "dow_cos": np.cos(2 * np.pi * dow / 7),
        "hour_of_week": dow * 24 + hour,
        "days_to_month_end": ref.days_in_month - ref.day,
        "parameters_changed": float(last is not None and (last["parameters_hash"] or NONE) != ph),
        "parameters_runs_seen": min(int((mph == ph).sum()), R),
        "flow_runs_seen": len(mine),
        BASELINE_SMOOTHED_RATE: smoothed,
        "flow_failure_rate_recent": sum(recent) / len(recent) if recent else smoothed,
        "flow_failure_streak": fail_streak,
        "flow_success_streak": succ_streak,
        BASELINE_LAST_FAILED: float(fail_streak > 0),
        "flow_hours_since_failure": hours,
        "flow_duration_trend": trend,
        "version_changed": float(last is not None and (last["flow_version"] or NONE) != ver),
        "version_runs_seen": min(len(v), R),
        "version_failure_rate_smoothed": vrate,
        "global_failure_rate": g,
        "global_failure_rate_window": w_rate,
        "other_flows_failures_window": len(others),
        "partner_failures_window": partner,
        "attempts_failed_window": att["all"],
        "flow_attempts_failed_window": att["flow"],
        **{f"attempts_{f}_window": att[f] for f in EXCEPTION_FAMILIES},
        **cadence,
        **relative,
    }


@pytest.mark.slow  # the brute-force reference reads every target one at a time
class TestReference:
    """The vectorised features equal a direct, one-target-at-a-time reading of their definitions."""

    @pytest.mark.parametrize(
        ("lead", "cfg"),
        [
            (timedelta(0), FeatureConfig()),
            (
                timedelta(minutes=20),
                FeatureConfig(
                    lookback=timedelta(days=2), recent_runs=4, global_window=timedelta(hours=2), prior_strength=1.5
                ),
            ),
        ],
    )
    def test_matches_brute_force(
        self, simulated: tuple[pd.DataFrame, pd.DataFrame], lead: timedelta, cfg: FeatureConfig
    ) -> None:
        """Every engineered numeric feature of 40 random runs matches the brute-force reference."""
        runs, attempts = simulated
        batch = build_features(runs, attempts=attempts, lead=lead, config=cfg)
        rng = np.random.default_rng(5)
        picks = rng.choice(len(runs), size=40, replace=False)
        for i in picks:
            target = runs.iloc[i]
            expected = reference(target, runs, attempts, lead, cfg)
            got = batch.loc[target["flow_run_id"]]
            for name, value in expected.items():
                assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), (name, target["flow_run_id"])


class TestLeakage:
    """Only history known strictly before the cutoff, and inside the lookback, reaches a target."""

    def test_previous_run_still_going_is_invisible(self) -> None:
        """A run that started before the target but ends after its scheduled start changes nothing."""
        base = [run("a", "etl", 0), run("b", "etl", 1)]
        target = frame(run("t", "etl", 2, "SCHEDULED"))
        without = one(target, frame(*base))
        for state in ("FAILED", "COMPLETED", "CRASHED"):
            overlapping = run("c", "etl", 1.5, state, minutes=45, version="2", params={"n": 2})
            assert one(target, frame(*base, overlapping)).equals(without)
            running = run("d", "etl", 1.9, "RUNNING")
            assert one(target, frame(*base, overlapping, running)).equals(without)

    def test_run_ending_exactly_at_the_cutoff_is_invisible(self) -> None:
        """The cutoff is strict: a failure that ends at the scheduled start is not yet known."""
        target = frame(run("t", "etl", 2, "SCHEDULED"))
        at_cutoff = one(target, frame(run("a", "etl", 1, "FAILED", minutes=60)))
        just_before = one(target, frame(run("a", "etl", 1, "FAILED", minutes=59.99)))
        assert at_cutoff[BASELINE_LAST_FAILED] == 0.0
        assert just_before[BASELINE_LAST_FAILED] == 1.0

    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(seed=st.integers(0, 10_000), split=st.floats(0.3, 0.9))
    def test_later_outcomes_change_nothing(
        self, simulated: tuple[pd.DataFrame, pd.DataFrame], seed: int, split: float
    ) -> None:
        """Rewriting the outcome and end of every run that ended after a moment T, and the version and
        parameters of every run scheduled after T, leaves the features of runs scheduled up to T unchanged."""
        runs, attempts = simulated
        rng = np.random.default_rng(seed)
        t_split = runs["scheduled_start"].quantile(split)
        later = (runs["end_time"] >= t_split) | runs["end_time"].isna()
        changed = runs.copy()
        n = int(later.sum())
        changed.loc[later, "state"] = rng.choice(["FAILED", "COMPLETED", "CRASHED", "CANCELLED"], n)
        changed.loc[later, "end_time"] = t_split + pd.to_timedelta(rng.integers(0, 10**12, n))
        future = runs["scheduled_start"] > t_split
        changed.loc[future, "flow_version"] = "9.9.9"
        changed.loc[future, "parameters_hash"] = "ffffffffffffffff"
        for column in [c for c in runs.columns if c.startswith("feature_") and runs[c].dtype == object]:
            changed.loc[future, column] = "rewritten"  # a later run's attributes are not history yet
        late_attempts = attempts["end_time"] >= t_split
        att_changed = attempts.copy()
        att_changed.loc[late_attempts, "outcome"] = "failure"
        att_changed.loc[late_attempts, "exception_type"] = "ConnectionError"
        early = runs.loc[runs["scheduled_start"] <= t_split]
        early_changed = changed.loc[early.index]
        before = build_features(early, runs, attempts)
        after = build_features(early_changed, changed, att_changed)
        pd.testing.assert_frame_equal(before, after, check_exact=True)

    def test_own_outcome_never_matters(self) -> None:
        """The target's own state, start and end times (even an end before its schedule) are never read."""
        hist = [run("a", "etl", 0, "FAILED"), run("b", "other", 0.5, "FAILED")]
        variants = [
            run("t", "etl", 2, "SCHEDULED"),
            run("t", "etl", 2, "COMPLETED", delay=3),
            run("t", "etl", 2, "FAILED", minutes=1),
            run("t", "etl", 2, "RUNNING"),
            run("t", "etl", 2, "FAILED", delay=-30, minutes=2),  # started early and ended before its schedule
        ]
        rows = [one(frame(v), frame(*hist, v)) for v in variants]
        for row in rows[1:]:
            assert row.equals(rows[0])

    def test_lead_shifts_the_cutoff(self) -> None:
        """With a lead, a failure that ended inside the lead is not seen; lead=0 sees it."""
        target = frame(run("t", "etl", 2, "SCHEDULED"))
        hist = frame(run("a", "etl", 0), run("b", "etl", 1.5, "FAILED", minutes=10))  # ends 01:40
        at_zero = one(target, hist)
        at_thirty = one(target, hist, lead=timedelta(minutes=30))
        assert at_zero[BASELINE_LAST_FAILED] == 1.0
        assert at_zero["flow_hours_since_failure"] == pytest.approx(20 / 60)
        assert at_thirty[BASELINE_LAST_FAILED] == 0.0
        assert at_thirty["flow_runs_seen"] == 1.0
        assert at_thirty["hour_of_week"] == at_zero["hour_of_week"] == 2.0  # calendar stays the schedule's

    def test_negative_lead_is_refused(self) -> None:
        """A negative lead would look past the scheduled start."""
        with pytest.raises(ConfigurationError, match="lead"):
            build_features(frame(run("t", "etl", 2)), lead=timedelta(minutes=-1))

    def test_lookback_forgets_old_history(self) -> None:
        """History known before cutoff - lookback is ignored."""
        cfg = FeatureConfig(lookback=timedelta(hours=3), global_window=timedelta(hours=1))
        target = frame(run("t", "etl", 5, "SCHEDULED"))
        row = one(target, frame(run("old", "etl", 1, "FAILED"), run("new", "etl", 3)), config=cfg)
        assert row["flow_runs_seen"] == 1.0
        assert row["flow_hours_since_failure"] == 3.0  # none in the lookback: capped at lookback hours
        assert row["global_failure_rate"] == 0.0

    def test_history_defaults_to_targets(self, simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Without a history the targets are their own history."""
        runs, _ = simulated
        pd.testing.assert_frame_equal(build_features(runs), build_features(runs, runs), check_exact=True)


class TestExactValues:
    """A small hand-made history gives the documented numbers."""

    @pytest.fixture
    def history(self) -> pd.DataFrame:
        return frame(
            run("h0", "etl", 0, minutes=10),
            run("h1", "etl", 1, "FAILED"),
            run("h2", "etl", 2, minutes=20),
            run("h3", "etl", 3, "CANCELLED"),
            run("h4", "etl", 4, "FAILED", version="2"),
            run("h5", "etl", 5, "CRASHED", version="2", params={"n": 1, "full": True}),
            run("s0", "sync", 5.5, minutes=5),
        )

    def test_history_features(self, history: pd.DataFrame) -> None:
        """Streaks skip CANCELLED; the smoothed rate is (fails + k*g) / (labelled + k)."""
        row = one(frame(run("t", "etl", 6, "SCHEDULED", version="2", params={"n": 1, "full": True})), history)
        g = 3 / 6  # 3 failures among 6 runs with an outcome, all flows
        smoothed = (3 + 5.0 * g) / (5 + 5.0)
        assert row["global_failure_rate"] == g
        assert row[BASELINE_SMOOTHED_RATE] == pytest.approx(smoothed)
        assert row["flow_runs_seen"] == 6.0  # the cancelled run is seen, just not labelled
        assert row["flow_failure_rate_recent"] == pytest.approx(3 / 5)
        assert row["flow_failure_streak"] == 2.0
        assert row["flow_success_streak"] == 0.0
        assert row[BASELINE_LAST_FAILED] == 1.0
        assert row["flow_hours_since_failure"] == pytest.approx(55 / 60)  # h5 ended 05:05, cutoff 06:00
        assert row["flow_duration_trend"] == 1.0  # both successes are among the last 3 and the last 10
        assert row["version_changed"] == 0.0
        assert row["version_runs_seen"] == 2.0
        assert row["version_failure_rate_smoothed"] == pytest.approx((2 + 5.0 * smoothed) / (2 + 5.0))
        assert row["parameters_changed"] == 0.0
        assert row["parameters_runs_seen"] == 1.0
        assert row["parameter_count"] == 2.0
        assert row["global_failure_rate_window"] == g
        assert row["other_flows_failures_window"] == 0.0

    def test_recent_window_and_trend(self, history: pd.DataFrame) -> None:
        """recent_runs bounds the recent rate; the trend compares the last 3 successes with the last R."""
        row = one(frame(run("t", "etl", 6, "SCHEDULED")), history, config=FeatureConfig(recent_runs=1))
        assert row["flow_failure_rate_recent"] == 1.0
        assert row["flow_duration_trend"] == pytest.approx(((10 + 20) / 2) / 20)
        assert row["version_runs_seen"] == 1.0  # capped at recent_runs

    def test_new_version_and_parameters(self, history: pd.DataFrame) -> None:
        """A version or parameter set unlike the last ended run's is flagged and has no runs yet."""
        row = one(frame(run("t", "etl", 6, "SCHEDULED", version="3", params={"n": 5})), history)
        assert row["version_changed"] == 1.0
        assert row["version_runs_seen"] == 0.0
        assert row["version_failure_rate_smoothed"] == pytest.approx(row[BASELINE_SMOOTHED_RATE])
        assert row["parameters_changed"] == 1.0
        assert row["parameters_runs_seen"] == 0.0

    def test_success_streak(self) -> None:
        """Successes after the last failure make the success streak."""
        hist = frame(
            run("a", "etl", 0, "FAILED"), run("b", "etl", 1), run("c", "etl", 2, "CANCELLED"), run("d", "etl", 3)
        )
        row = one(frame(run("t", "etl", 4, "SCHEDULED")), hist)
        streaks = (row["flow_success_streak"], row["flow_failure_streak"], row[BASELINE_LAST_FAILED])
        assert streaks == (2.0, 0.0, 0.0)
        assert row["flow_hours_since_failure"] == pytest.approx(4 - 5 / 60)

    def test_simultaneous_ends_are_ordered_by_id(self) -> None:
        """Runs ending at the same instant (second-precision imports) are ordered by schedule, then id."""
        target = frame(run("t", "etl", 2, "SCHEDULED"))
        same = [run("r1", "etl", 1, "FAILED", minutes=5), run("r2", "etl", 1, "COMPLETED", minutes=5)]
        row = one(target, frame(*same))
        assert (row[BASELINE_LAST_FAILED], row["flow_success_streak"]) == (0.0, 1.0)
        assert one(target, frame(*same[::-1])).equals(row)
        swapped = [run("r1", "etl", 1, "COMPLETED", minutes=5), run("r2", "etl", 1, "FAILED", minutes=5)]
        assert one(target, frame(*swapped))[BASELINE_LAST_FAILED] == 1.0
        earlier = [run("r1", "etl", 1, "COMPLETED", minutes=5), run("r2", "etl", 0.5, "FAILED", minutes=35)]
        assert one(target, frame(*earlier))[BASELINE_LAST_FAILED] == 0.0

    def test_no_history(self) -> None:
        """A first run gets neutral values, never NaN."""
        row = one(frame(run("t", "etl", 4, "SCHEDULED")), frame(run("x", "etl", 9)))
        assert row["flow_runs_seen"] == 0.0
        assert row[BASELINE_SMOOTHED_RATE] == 0.0
        assert row["flow_hours_since_failure"] == 30 * 24
        assert row["flow_duration_trend"] == 1.0
        assert not row[list(NUMERIC_FEATURES)].isna().any()

    def test_calendar(self) -> None:
        """Hour and weekday are cyclic; hour_of_week counts from Monday 00:00; days to the month's end."""
        row = one(frame(run("t", "etl", 24 * 6 + 18, "SCHEDULED")))  # Sunday 2026-03-08 18:00
        assert row["hour_sin"] == pytest.approx(-1.0)
        assert row["hour_cos"] == pytest.approx(0.0, abs=1e-12)
        assert row["dow_sin"] == pytest.approx(np.sin(2 * np.pi * 6 / 7))
        assert row["hour_of_week"] == 6 * 24 + 18
        assert row["days_to_month_end"] == 23

    def test_scheduled_start_falls_back_to_start_time(self) -> None:
        """Without a scheduled start the start time places the run."""
        target = frame(run("t", "etl", 2))
        target["scheduled_start"] = pd.NaT
        row = one(target, frame(run("a", "etl", 1, "FAILED")))
        assert row["flow_hours_since_failure"] == pytest.approx(55 / 60)


class TestCrossFlow:
    """Signals from other flows in the global window, and co-failure partners learnt from the past."""

    @pytest.fixture
    def history(self) -> pd.DataFrame:
        return frame(
            run("b1", "db-load", 1, "FAILED"),  # B fails, then A fails: one co-failure event
            run("a1", "etl", 1.5, "FAILED"),
            run("b2", "db-load", 10, "FAILED"),
            run("a2", "etl", 10.5, "FAILED"),
            run("a3", "etl", 17, "FAILED"),  # A fails with no B failure in the 6 h before: no event
            run("c1", "report", 19, "COMPLETED"),
            run("b3", "db-load", 20, "FAILED"),  # B fails inside the target's window
            run("c2", "report", 20.2, "FAILED"),
        )

    def test_partner_failures(self, history: pd.DataFrame) -> None:
        """Each window failure of B adds the past A failures that followed a B failure, over A's fails + 1."""
        row = one(frame(run("t", "etl", 21, "SCHEDULED")), history)
        # b3 contributes 2 events (a1, a2); c2's flow never preceded an A failure
        assert row["partner_failures_window"] == pytest.approx(2 / (3 + 1))
        assert row["other_flows_failures_window"] == 2.0
        assert row["global_failure_rate_window"] == pytest.approx(3 / 4)  # a3, b3, c2 failed; c1 did not

    def test_no_partner_without_shared_history(self, history: pd.DataFrame) -> None:
        """A flow whose failures never followed others' gets no partner signal, only the plain count."""
        row = one(frame(run("t", "report", 20.1, "SCHEDULED")), history)  # before c2 fails
        assert row["partner_failures_window"] == 0.0
        assert row["other_flows_failures_window"] == 2.0  # a3 and b3
        later = one(frame(run("t", "report", 21, "SCHEDULED")), history)
        # c2 followed a3 (etl) and b3 (db-load) within 6 h: one event each, over 1 failure + 1
        assert later["partner_failures_window"] == pytest.approx((1 + 1) / 2)

    def test_partner_events_only_from_known_history(self, history: pd.DataFrame) -> None:
        """Co-failure events after the cutoff (here a later A failure after b3) do not count."""
        later = frame(*history.to_dict("records"), run("a4", "etl", 20.5, "FAILED"))
        for col in ("scheduled_start", "start_time", "end_time"):
            later[col] = later[col].astype("datetime64[ns, UTC]")
        target = frame(run("t", "etl", 20.4, "SCHEDULED"))
        name = "partner_failures_window"
        assert one(target, later)[name] == one(target, history)[name]


class TestAttempts:
    """Failed task attempts in the global window, by flow and by exception family."""

    @pytest.fixture
    def runs(self) -> pd.DataFrame:
        return frame(
            run("o", "etl", 13),
            run("a", "etl", 18),
            run("b", "sync", 19),
            run("t", "etl", 21, "SCHEDULED"),
        )

    @pytest.mark.parametrize("attempts", [None, "empty"])
    def test_absent_attempts_give_zeros(self, runs: pd.DataFrame, attempts: object) -> None:
        """No attempts frame (or an empty one) gives zeros, not NaN."""
        att = pd.DataFrame(columns=["flow_run_id", "end_time", "outcome"]) if attempts == "empty" else None
        row = build_features(runs, attempts=att).loc["t"]
        names = [c for c in NUMERIC_FEATURES if "attempts" in c]
        assert (row[names] == 0.0).all()

    def test_counts(self, runs: pd.DataFrame) -> None:
        """Failures and timeouts in [cutoff - window, cutoff) count; successes, old and later ones do not."""
        t = T0 + 21 * H
        att = pd.DataFrame(
            [
                attempt("b", t - 30 * M, exc="ConnectionError"),
                attempt("a", t - 20 * M, "timeout", exc="AttemptTimeoutError"),
                attempt("a", t - 10 * M, "success", exc=None),
                attempt("o", t - 7 * H),  # outside the 6 h window
                attempt("b", t - 5 * M, exc="MemoryError"),
                attempt("b", t + M),  # after the cutoff
                attempt("zz", t - 5 * M, exc="socket.gaierror"),  # a run nobody knows: counts, flow unknown
                attempt("t", t - 5 * M),  # the target's own attempt before its schedule: never counts
            ]
        )
        row = build_features(runs, attempts=att).loc["t"]
        assert row["attempts_failed_window"] == 4.0
        assert row["flow_attempts_failed_window"] == 1.0
        assert row["attempts_timeout_window"] == 1.0
        assert row["attempts_connection_window"] == 2.0
        assert row["attempts_resource_window"] == 1.0

    def test_flow_name_column_is_used(self, runs: pd.DataFrame) -> None:
        """An attempts frame that carries flow_name attributes attempts of runs missing from history."""
        t = T0 + 21 * H
        att = pd.DataFrame([attempt("zz", t - 5 * M)]).assign(flow_name="etl")
        assert build_features(runs, attempts=att).loc["t", "flow_attempts_failed_window"] == 1.0


class TestLiveEqualsBatch:
    """A run described alone, from a history loaded for its window, gets exactly its backtest row."""

    def test_fifty_random_runs(self, simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Each of 50 runs computed alone with history = all runs equals its row of the batch."""
        runs, attempts = simulated
        batch = build_features(runs, attempts=attempts)
        rng = np.random.default_rng(0)
        for i in rng.choice(len(runs), size=50, replace=False):
            alone = build_features(runs.iloc[[i]], runs, attempts)
            pd.testing.assert_frame_equal(alone, batch.iloc[[i]], check_exact=True)

    def test_history_window_is_enough(self, simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Loading only the runs that ended inside history_window() gives the same rows."""
        runs, attempts = simulated
        cfg = FeatureConfig(lookback=timedelta(days=3), global_window=timedelta(hours=3))
        batch = build_features(runs, attempts=attempts, config=cfg)
        rng = np.random.default_rng(1)
        for i in rng.choice(len(runs), size=20, replace=False):
            target = runs.iloc[[i]]
            start, end = history_window(target, config=cfg)
            hist = runs[(runs["end_time"] >= start) & (runs["end_time"] < end)]
            att = attempts[(attempts["end_time"] >= end - cfg.global_window) & (attempts["end_time"] < end)]
            att = att.merge(runs[["flow_run_id", "flow_name"]], on="flow_run_id", how="left")
            alone = build_features(target, hist, att, config=cfg)
            pd.testing.assert_frame_equal(alone, batch.iloc[[i]], check_exact=True)

    def test_batch_order_and_split_do_not_matter(self, simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Shuffled history and targets described in two halves give the same rows."""
        runs, attempts = simulated
        batch = build_features(runs, attempts=attempts)
        shuffled = runs.sample(frac=1.0, random_state=3)
        half = len(runs) // 2
        parts = [
            build_features(shuffled.iloc[:half], shuffled, attempts),
            build_features(shuffled.iloc[half:], shuffled, attempts),
        ]
        together = pd.concat(parts).loc[batch.index]
        pd.testing.assert_frame_equal(together, batch, check_exact=True, check_index_type=False)


class TestPreparedHistory:
    """RunIndex/AttemptIndex: a history prepared once, extended piece by piece, gives the same features."""

    def ended(self, runs: pd.DataFrame) -> pd.DataFrame:
        return runs.loc[runs["end_time"].notna()].sort_values("end_time", kind="stable")

    def test_extended_in_arrival_order_equals_the_frame(self, simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Runs added in end-time chunks (as a live store receives them) give the frame's features exactly."""
        runs, attempts = simulated
        batch = build_features(runs, runs, attempts)
        ordered = self.ended(runs)
        index = RunIndex.from_frame(ordered.iloc[:100])
        att = AttemptIndex.from_frame(attempts.iloc[:0], runs=runs)
        for chunk in np.array_split(np.arange(100, len(ordered)), 37):
            index = index.extend(RunIndex.from_frame(ordered.iloc[chunk], vocab=index.vocab))
        for chunk in np.array_split(np.arange(len(attempts)), 11):
            att = att.extend(AttemptIndex.from_frame(attempts.iloc[chunk], runs=runs, flows=att.flows))
        assert len(index) == len(ordered) and len(att) == len(attempts)
        pd.testing.assert_frame_equal(build_features(runs, index, att), batch, check_exact=True)

    def test_out_of_order_pieces_are_put_in_order(self, simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Pieces arriving in any order (late writes, ties) still give the frame's features exactly."""
        runs, attempts = simulated
        tied = runs.copy()
        tied["end_time"] = tied["end_time"].dt.floor("h")  # many runs known at the same instant
        batch = build_features(tied, tied, attempts)
        shuffled = self.ended(tied).sample(frac=1.0, random_state=5)
        index = RunIndex.from_frame(shuffled.iloc[:0])
        for chunk in np.array_split(np.arange(len(shuffled)), 23):
            index = index.extend(RunIndex.from_frame(shuffled.iloc[chunk], vocab=index.vocab))
        assert (np.diff(index.known) >= 0).all()
        pd.testing.assert_frame_equal(build_features(tied, index, attempts), batch, check_exact=True)

    def test_a_target_of_a_flow_the_history_never_had(self, simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """A new flow, version and parameter set have no history: zero runs seen, no change flagged."""
        runs, _ = simulated
        target = runs.iloc[[len(runs) // 2]].assign(flow_name="brand-new", flow_version="v9", parameters_hash="p")
        row = build_features(target, RunIndex.from_frame(runs)).iloc[0]
        assert row["flow_runs_seen"] == 0 and row["version_runs_seen"] == 0 and row["parameters_runs_seen"] == 0
        assert row["version_changed"] == 0 and row["global_failure_rate"] > 0

    def test_attempts_take_their_run_start_from_their_own_columns(
        self, simulated: tuple[pd.DataFrame, pd.DataFrame]
    ) -> None:
        """Without the runs at hand, run_scheduled_start/run_start_time give the same known-at times."""
        runs, attempts = simulated
        runs = runs.copy()  # every fifth run scheduled a day late: its attempts are known from then on
        runs.loc[::5, "scheduled_start"] += pd.Timedelta(days=1)
        joined = attempts.merge(
            runs[["flow_run_id", "flow_name", "scheduled_start", "start_time"]].rename(
                columns={"scheduled_start": "run_scheduled_start", "start_time": "run_start_time"}
            ),
            on="flow_run_id",
            how="left",
        )
        looked_up = AttemptIndex.from_frame(attempts, runs=runs)
        own = AttemptIndex.from_frame(joined)
        np.testing.assert_array_equal(own.known, looked_up.known)
        assert (own.known > own.end).any()
        np.testing.assert_array_equal(AttemptIndex.from_frame(attempts).known, own.end)  # no run: its end

    def test_a_vocabulary_from_its_names_keeps_their_codes(self) -> None:
        """from_names (a snapshot read back) gives names[i] code i and goes on growing; a repeat is refused."""
        vocab = Vocabulary.from_names(["etl", "sync"])
        assert vocab.encode(np.array(["sync", "report", "etl"], dtype=object)).tolist() == [1, 2, 0]
        assert vocab.names == ["etl", "sync", "report"]
        with pytest.raises(ValueError, match="repeat"):
            Vocabulary.from_names(["etl", "etl"])

    def test_extend_needs_the_same_vocabulary(self, simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Codes from another vocabulary would mean other flows: refused."""
        runs, attempts = simulated
        with pytest.raises(ValueError, match="vocab"):
            RunIndex.from_frame(runs.iloc[:10]).extend(RunIndex.from_frame(runs.iloc[10:20]))
        with pytest.raises(ValueError, match="flows"):
            AttemptIndex.from_frame(attempts.iloc[:10]).extend(AttemptIndex.from_frame(attempts.iloc[10:20]))


class TestOutput:
    """Shape, dtypes and names of the feature frame."""

    def test_index_order_and_columns(self, simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """One row per target in the targets' order, engineered columns then feature_* passthrough."""
        runs, _ = simulated
        targets = runs.iloc[::-7]
        out = build_features(targets, runs)
        assert out.index.name == "flow_run_id"
        assert out.index.tolist() == targets["flow_run_id"].tolist()
        passthrough = ["feature_input_rows", "feature_source_system", "feature_triggered_by"]
        history = [
            f"{prefix}{name}_{suffix}"
            for name in ("hour", "input_rows", "source_system", "triggered_by")
            for prefix, suffix in [
                ("", "failure_rate_smoothed"),
                ("", "runs_seen"),
                ("", "failure_rate_window"),
                ("", "last_ended_failed"),
                ("", "failure_rate_recent"),
                ("flow_", "failure_rate_smoothed"),
                ("flow_", "runs_seen"),
            ]
        ]
        kinds = (
            "failure_rate_smoothed",
            "runs_seen",
            "failure_rate_window",
            "last_ended_failed",
            "failure_rate_recent",
        )
        same_job = [f"same_job_{kind}" for kind in kinds]
        assert list(out.columns) == [*ENGINEERED, *passthrough, *history, *same_job, "input_rows_to_flow_usual"]

    def test_dtypes(self, simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Numeric features are float64 without NaN; categorical ones are object text without missing."""
        runs, _ = simulated
        out = build_features(runs)
        spec = feature_spec(out)
        history = [
            c
            for c in out.columns
            if c.endswith(("_failure_rate_smoothed", "_runs_seen", "_window", "_failed", "_recent", "_to_flow_usual"))
        ]
        history = [c for c in history if c not in NUMERIC_FEATURES]
        assert spec.numeric == (*NUMERIC_FEATURES, "feature_input_rows", *history)
        assert len(history) == 34  # 7 each for hour, input_rows, source_system, triggered_by; 5 same_job; input_rows
        assert spec.categorical == (*CATEGORICAL_FEATURES, "feature_source_system", "feature_triggered_by")
        assert (out[list(spec.numeric)].dtypes == np.float64).all()
        assert all(dtype == np.dtype(object) for dtype in out[list(spec.categorical)].dtypes)
        assert not out.isna().any().any()
        assert out[list(spec.categorical)].map(lambda v: isinstance(v, str)).all().all()

    def test_passthrough_missing_values(self) -> None:
        """Missing text becomes '<none>', missing numbers stay NaN, booleans become 0/1."""
        targets = frame(
            run("t1", "etl", 1, rows=10, src="sap", flag=True), run("t2", "etl", 2, rows=None, src=None, flag=False)
        )
        targets["deployment"] = [None, "etl/prod"]
        out = build_features(targets)
        assert out["feature_src"].tolist() == ["sap", NONE]
        assert out["feature_rows"].iloc[0] == 10.0 and np.isnan(out["feature_rows"].iloc[1])
        assert out["feature_flag"].tolist() == [1.0, 0.0]
        assert out["deployment"].tolist() == [NONE, "etl/prod"]

    def test_public_pandas_construction_gives_the_same_frame(
        self, simulated: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without pandas' private DataFrame._from_arrays the frame is built the public way: same frame."""
        runs, attempts = simulated
        fast = build_features(runs.iloc[:50], runs, attempts)
        monkeypatch.delattr(pd.DataFrame, "_from_arrays")
        pd.testing.assert_frame_equal(build_features(runs.iloc[:50], runs, attempts), fast, check_exact=True)

    def test_datetime_attributes_are_text_and_missing_is_none(self) -> None:
        """A datetime feature_* column is a category (its text, as the store keeps it); NaT is <none>."""
        times = pd.Series([T0, pd.NaT], dtype="datetime64[ns, UTC]")
        targets = frame(run("a", "etl", 1, "SCHEDULED"), run("b", "etl", 2, "SCHEDULED")).assign(feature_at=times)
        out = build_features(targets, frame(run("h", "etl", 0)))
        assert out["feature_at"].tolist() == [str(T0), NONE]
        assert out["feature_at"].dtype == object

    def test_empty_targets(self) -> None:
        """No targets give an empty frame with the same columns and dtypes."""
        targets = frame(run("t", "etl", 1, rows=3)).iloc[:0]
        out = build_features(targets)
        hour = [
            "hour_failure_rate_smoothed",
            "hour_runs_seen",
            "hour_failure_rate_window",
            "hour_last_ended_failed",
            "hour_failure_rate_recent",
        ]
        rows = [c.replace("hour", "rows") for c in hour]
        flows = [
            ["flow_hour_failure_rate_smoothed", "flow_hour_runs_seen"],
            ["flow_rows_failure_rate_smoothed", "flow_rows_runs_seen"],
        ]
        same_job = [c.replace("hour", "same_job") for c in hour]
        expected = [*ENGINEERED, "feature_rows", *hour, *flows[0], *rows, *flows[1], *same_job, "rows_to_flow_usual"]
        assert out.empty and list(out.columns) == expected
        assert list(out.columns) == list(build_features(frame(run("t", "etl", 1, rows=3))).columns)
        assert feature_spec(out).categorical == CATEGORICAL_FEATURES

    def test_missing_columns(self) -> None:
        """A frame without the needed columns is refused with the columns named."""
        with pytest.raises(FeatureSchemaError, match="flow_name"):
            build_features(pd.DataFrame({"flow_run_id": ["x"], "scheduled_start": [T0]}))
        with pytest.raises(FeatureSchemaError, match="end_time"):
            no_end = pd.DataFrame({"flow_run_id": ["x"], "flow_name": ["y"]})
            build_features(frame(run("t", "etl", 1)), no_end)

    def test_target_without_time(self) -> None:
        """A target with neither scheduled_start nor start_time is refused by id."""
        target = frame(run("t", "etl", 1, "SCHEDULED"))
        target["scheduled_start"] = pd.NaT
        with pytest.raises(FeatureSchemaError, match="'t'"):
            build_features(target)

    def test_duplicate_history_ids(self) -> None:
        """History must list each run once."""
        hist = frame(run("a", "etl", 1), run("a", "etl", 2))
        with pytest.raises(FeatureSchemaError, match="repeats flow_run_id 'a'"):
            build_features(frame(run("t", "etl", 3, "SCHEDULED")), hist)

    def test_microsecond_times_and_string_dtypes(self) -> None:
        """Times in other resolutions and pandas' str dtype give the same features."""
        runs = frame(run("a", "etl", 0, "FAILED"), run("b", "etl", 1), run("t", "etl", 2, "SCHEDULED"))
        other = runs.copy()
        for col in ("scheduled_start", "start_time", "end_time"):
            other[col] = other[col].astype("datetime64[us, UTC]")
        for col in ("flow_run_id", "flow_name", "state", "flow_version"):
            other[col] = other[col].astype("str")
        pd.testing.assert_frame_equal(build_features(runs), build_features(other), check_exact=True)


class TestConfigAndSpec:
    """FeatureConfig validation, FeatureSpec and failure_labels."""

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("lookback", timedelta(0)),
            ("recent_runs", 0),
            ("recent_runs", 2.5),
            ("global_window", timedelta(days=31)),
            ("prior_strength", -1.0),
        ],
    )
    def test_invalid_config(self, field: str, value: object) -> None:
        """Out-of-range settings are refused naming the field."""
        with pytest.raises(ConfigurationError, match=field):
            FeatureConfig(**{field: value})

    def test_spec_round_trip_and_coerce(self) -> None:
        """A spec survives as_dict/from_dict and coerces a frame to its columns and types."""
        spec = FeatureSpec(numeric=("x", "y"), categorical=("c",))
        assert FeatureSpec.from_dict(spec.as_dict()) == spec
        assert spec.names == ("x", "y", "c")
        out = spec.coerce(pd.DataFrame({"c": ["a", np.nan], "y": [1, 2], "x": ["3", None], "extra": [0, 0]}))
        assert list(out.columns) == ["x", "y", "c"]
        assert out["c"].tolist() == ["a", NONE]
        assert out["x"].dtype == np.float64 and np.isnan(out["x"].iloc[1])
        with pytest.raises(FeatureSchemaError, match="lack column"):
            spec.coerce(pd.DataFrame({"x": [1]}))

    def test_failure_labels(self) -> None:
        """Failures are 1, successes 0, everything else NaN, indexed by run id."""
        states = ["FAILED", "CRASHED", "TIMEDOUT", "COMPLETED", "CANCELLED", "RUNNING", None]
        runs = pd.DataFrame({"flow_run_id": list("abcdefg"), "state": states})
        labels = failure_labels(runs)
        assert labels.index.name == "flow_run_id"
        assert labels.tolist()[:4] == [1.0, 1.0, 1.0, 0.0]
        assert labels.iloc[4:].isna().all()

    def test_history_window(self) -> None:
        """The window spans lookback plus global window before the earliest cutoff, up to the latest one."""
        targets = frame(run("t1", "etl", 100, "SCHEDULED"), run("t2", "etl", 110, "SCHEDULED"))
        start, end = history_window(targets, lead=timedelta(hours=1))
        assert start == T0 + 99 * H - pd.Timedelta(days=30) - 6 * H
        assert end == T0 + 109 * H


class TestPandasFastPath:
    """The frame is built through pandas' private DataFrame._from_arrays only where that was tested."""

    @staticmethod
    def columns_of(frame: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
        return [(str(name), frame[name].to_numpy()) for name in frame.columns]

    def test_fast_and_public_paths_give_equal_frames(self, simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Float64 and object text columns come out equal, dtypes included, whichever path builds them."""
        runs, attempts = simulated
        columns = self.columns_of(build_features(runs.iloc[:50], runs, attempts))
        index = pd.Index(runs["flow_run_id"].iloc[:50].to_numpy(dtype=object), name="flow_run_id", dtype=object)
        fast = _pandas_fast.frame_from_arrays(columns, index)
        public = _pandas_fast.frame_from_arrays_public(columns, index)
        pd.testing.assert_frame_equal(fast, public, check_exact=True)
        assert fast["flow_name"].dtype == object and fast["flow_runs_seen"].dtype == np.float64

    def test_the_fast_path_is_taken_on_a_tested_pandas(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """In the tested range the private constructor is called; the installed pandas is in that range."""
        oldest, newest = _pandas_fast.FAST_PATH_PANDAS
        assert oldest <= _pandas_fast.pandas_version() <= newest, "re-run the equality tests, then widen the range"
        calls: list[int] = []
        private = pd.DataFrame._from_arrays  # type: ignore[attr-defined]

        def spy(*args: object, **kwargs: object) -> pd.DataFrame:
            calls.append(1)
            return private(*args, **kwargs)

        monkeypatch.setattr(pd.DataFrame, "_from_arrays", spy)
        _pandas_fast.frame_from_arrays([("x", np.array([1.0]))], pd.Index(["r"]))
        assert calls == [1]

    def test_an_untested_pandas_takes_the_public_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Outside the tested range the private constructor is never called, and the frame is the same."""

        def refuse(*args: object, **kwargs: object) -> pd.DataFrame:
            raise AssertionError("DataFrame._from_arrays called on an untested pandas")

        columns = [("x", np.array([1.5, 2.0])), ("c", np.array(["a", None], dtype=object))]
        expected = _pandas_fast.frame_from_arrays(columns, pd.Index(["r", "s"]))
        monkeypatch.setattr(_pandas_fast, "FAST_PATH_PANDAS", ((0, 0, 0), (1, 0, 0)))
        monkeypatch.setattr(pd.DataFrame, "_from_arrays", refuse)
        pd.testing.assert_frame_equal(_pandas_fast.frame_from_arrays(columns, pd.Index(["r", "s"])), expected)


class TestAttributeHistory:
    """The failure history of the run's pre-run attributes, across flows, from ended runs only."""

    def test_a_new_flow_inherits_its_users_record(self) -> None:
        """A flow never seen before reads the failure rate of the user's runs of other flows."""
        hist = [run(f"a{i}", f"flow{i}", i * 0.1, "FAILED", user="alice") for i in range(4)]
        hist += [run(f"b{i}", f"other{i}", i * 0.1, "COMPLETED", user="bob") for i in range(4)]
        alice = one(frame(run("t", "new", 2, "SCHEDULED", user="alice")), frame(*hist))
        bob = one(frame(run("t", "new", 2, "SCHEDULED", user="bob")), frame(*hist))
        assert alice["user_runs_seen"] == bob["user_runs_seen"] == 4.0
        assert alice["user_failure_rate_smoothed"] > 0.5 > bob["user_failure_rate_smoothed"]
        assert alice["user_last_ended_failed"] == 1.0 and bob["user_last_ended_failed"] == 0.0
        assert alice["flow_user_failure_rate_smoothed"] == alice["flow_failure_rate_smoothed"]  # no own history

    def test_runs_still_going_and_the_own_outcome_are_invisible(self) -> None:
        """Only runs that ended before the cutoff count; the target itself never does."""
        hist = [run("a", "etl", 0, "COMPLETED", user="alice")]
        target = run("t", "etl", 2, "SCHEDULED", user="alice")
        without = one(frame(target), frame(*hist, target))
        overlapping = run("c", "other", 1.5, "FAILED", minutes=45, user="alice")
        failed_self = run("t", "etl", 2, "FAILED", user="alice")
        assert one(frame(target), frame(*hist, overlapping, target)).equals(without)
        assert one(frame(failed_self), frame(*hist, failed_self)).equals(without)
        assert without["user_runs_seen"] == 1.0

    def test_a_numeric_attribute_is_a_category_too(self) -> None:
        """Runs that asked for the same number (3600 s of wall time) share a record; 3600 and 3600.0 are one."""
        hist = [run(f"a{i}", f"f{i}", i * 0.1, "FAILED", requested=3600) for i in range(3)]
        hist += [run(f"b{i}", f"g{i}", i * 0.1, "COMPLETED", requested=60) for i in range(3)]
        asked = one(frame(run("t", "new", 2, "SCHEDULED", requested=3600.0)), frame(*hist))
        assert asked["requested_runs_seen"] == 3.0 and asked["requested_last_ended_failed"] == 1.0
        assert asked["feature_requested"] == 3600.0  # the number itself is still passed through

    def test_hour_of_day_history(self) -> None:
        """Runs scheduled at the target's hour of day (UTC) count for it; other hours do not."""
        hist = [run(f"a{i}", "etl", 24 * i + 3, "FAILED") for i in range(3)]
        hist += [run(f"b{i}", "etl", 24 * i + 5, "COMPLETED") for i in range(3)]
        at_three = one(frame(run("t", "etl", 24 * 4 + 3, "SCHEDULED")), frame(*hist))
        at_five = one(frame(run("t", "etl", 24 * 4 + 5, "SCHEDULED")), frame(*hist))
        assert at_three["hour_runs_seen"] == at_five["hour_runs_seen"] == 3.0
        assert at_three["hour_failure_rate_smoothed"] > at_five["hour_failure_rate_smoothed"]

    def test_the_same_from_a_prepared_index(self) -> None:
        """Live scoring's prepared history gives the same attribute features as the frame."""
        hist = frame(
            *[
                run(f"a{i}", f"f{i % 3}", i * 0.5, "FAILED" if i % 2 else "COMPLETED", user=f"u{i % 2}")
                for i in range(12)
            ]
        )
        target = frame(run("t", "f9", 10, "SCHEDULED", user="u1"))
        from forewarn.learning.features import RunIndex

        assert one(target, RunIndex.from_frame(hist)).equals(one(target, hist))


class TestCadenceAndRelative:
    """The flow's cadence, its runs with the same attributes, and numbers against the flow's usual ones."""

    HISTORY = (
        run("a", "etl", 0, minutes=30, user="u1", procs=8),
        run("b", "etl", 2, "FAILED", minutes=30, user="u1", procs=8),
        run("c", "etl", 4, minutes=30, user="u1", procs=16),
    )
    TARGET = run("t", "etl", 4.75, "SCHEDULED", user="u1", procs=16)
    NEW = (
        "flow_hours_since_end",
        "flow_usual_gap_hours",
        "flow_gap_ratio",
        "flow_failure_gap_ratio",
        "flow_runs_ended_hour",
        "procs_to_flow_usual",
        "same_job_failure_rate_smoothed",
        "same_job_runs_seen",
        "same_job_failure_rate_window",
        "same_job_last_ended_failed",
        "same_job_failure_rate_recent",
        "user_failure_rate_recent",
        "flow_user_runs_seen",
        "flow_procs_runs_seen",
    )

    def features(self, *extra: dict) -> pd.Series:
        return one(frame(self.TARGET), frame(*self.HISTORY, *extra))

    def test_values(self) -> None:
        """Runs of etl ended at 0:30, 2:30 (failed) and 4:30; the next one is due at 4:45."""
        got = self.features()
        assert got["flow_hours_since_end"] == pytest.approx(0.25)
        assert got["flow_usual_gap_hours"] == pytest.approx(2.0)  # (4:30 - 0:30) / 2 gaps
        assert got["flow_gap_ratio"] == pytest.approx(0.125)
        assert got["flow_hours_since_failure"] == pytest.approx(2.25)
        assert got["flow_failure_gap_ratio"] == pytest.approx(1.125)
        assert got["flow_runs_ended_hour"] == 1.0
        assert got["procs_to_flow_usual"] == pytest.approx(16 / ((8 + 8 + 16) / 3))
        assert got["same_job_runs_seen"] == 1.0 and got["same_job_last_ended_failed"] == 0.0  # etl, u1, 16: c
        assert got["flow_user_runs_seen"] == 3.0 and got["flow_procs_runs_seen"] == 1.0

    def test_no_history(self) -> None:
        """A flow never seen: the lookback, ratios of 1, no runs with the same attributes."""
        got = one(frame(self.TARGET), frame(run("x", "other", 0, user="u1", procs=16)))
        lookback = FeatureConfig().lookback / timedelta(hours=1)
        assert got["flow_hours_since_end"] == got["flow_usual_gap_hours"] == lookback
        assert got["flow_gap_ratio"] == got["flow_failure_gap_ratio"] == got["procs_to_flow_usual"] == 1.0
        assert got["flow_runs_ended_hour"] == got["same_job_runs_seen"] == got["flow_user_runs_seen"] == 0.0
        assert got["same_job_failure_rate_smoothed"] == got[BASELINE_SMOOTHED_RATE]
        forgotten = one(frame(self.TARGET), frame(run("x", "etl", 4.75 - 30 * 24 - 3, user="u1", procs=16)))
        assert forgotten[list(self.NEW)].equals(
            got[list(self.NEW)]
        )  # before the lookback (still in the global window): none

    @pytest.mark.parametrize("name", NEW)
    def test_later_outcomes_and_runs_still_going_change_nothing(self, name: str) -> None:
        """A run still going at the cutoff (even one that fails later) and later runs leave ``name`` as it
        was; the same run ended before the cutoff changes it (so the check can fail)."""
        without = self.features()[name]
        going = run("d", "etl", 4.6, "FAILED", minutes=30, user="u1", procs=16)  # ends 5:06, after 4:45
        later = run("e", "etl", 6, "FAILED", minutes=5, user="u1", procs=16)
        assert self.features(going)[name] == without
        assert self.features(going, later)[name] == without
        ended = run("d", "etl", 4.6, "FAILED", minutes=5, user="u1", procs=16)  # ends 4:41, before 4:45
        if name == "flow_usual_gap_hours":
            ended = run("d", "etl", 4.6, "FAILED", minutes=6, user="u1", procs=16, version="2")
        assert self.features(ended)[name] != without

    def test_the_same_from_a_prepared_index(self) -> None:
        """Live scoring's prepared history gives the same values as the frame."""
        index = RunIndex.from_frame(frame(*self.HISTORY))
        assert one(frame(self.TARGET), index)[list(self.NEW)].equals(self.features()[list(self.NEW)])


# feature | value | usual | its reason, given TestReasons.ROW
PHRASES = """
flow_failure_gap_ratio | 0.011 | 1.0 | submitted 2 min after this flow's last failure; usual gap: 3.0 h between its runs
flow_hours_since_end | 0.0333 | 2.0 | this flow's last run ended 2 min before this one; usual gap: 3.0 h between its runs
flow_gap_ratio | 0.011 | 1.0 | due 2 min after this flow's last run ended, 0.011x the usual gap between its runs (3.0 h)
flow_usual_gap_hours | 3.0 | 24.0 | this flow's recent runs ended 3.0 h apart on average (usual 24.0 h)
flow_runs_ended_hour | 3.0 | 0.0 | 3 runs of this flow ended in the hour before this one (usual 0)
procs_to_flow_usual | 4.0 | 1.0 | procs 64, 4x the mean of this flow's recent runs (16)
user_failure_rate_smoothed | 0.4 | 0.1 | runs with user u12 failed 40% of 25 past runs, smoothed (usual 10%)
user_runs_seen | 25.0 | 40.0 | 25 past runs of any flow with user u12 (usual 40)
user_failure_rate_window | 0.6 | 0.2 | runs with user u12 failed 60% in the recent window, smoothed (usual 20%)
user_last_ended_failed | 1.0 | 0.0 | the last run with user u12 failed
user_failure_rate_recent | 0.5 | 0.2 | the most recent runs with user u12 failed 50%, smoothed (usual 20%)
same_job_failure_rate_recent | 0.5 | 0.2 | this flow's most recent runs with the same attributes as this run failed 50%, smoothed (usual 20%)
flow_user_failure_rate_smoothed | 0.5 | 0.1 | this flow failed 50% of its 4 past runs with user u12, smoothed (usual 10%)
flow_user_runs_seen | 4.0 | 9.0 | 4 past runs of this flow with user u12 (usual 9)
hour_failure_rate_smoothed | 0.3 | 0.2 | runs with a scheduled hour of 14:00-15:00 UTC failed 30% of 9 past runs, smoothed (usual 20%)
same_job_failure_rate_smoothed | 0.3 | 0.2 | this flow failed 30% of its 2 past runs with the same attributes as this run, smoothed (usual 20%)
same_job_last_ended_failed | 1.0 | 0.0 | the last run of this flow with the same attributes as this run failed
"""  # noqa: E501 (one phrase a line)


class TestReasons:
    """Every feature build_features writes reads as a checkable statement, never as ``name = value``."""

    ROW = {
        "flow_runs_seen": 12.0,
        "flow_usual_gap_hours": 3.0,
        "flow_hours_since_failure": 2 / 60,
        "flow_hours_since_end": 2 / 60,
        "flow_last_ended_failed": 1.0,
        "feature_user": "u12",
        "feature_procs": 64.0,
        "user_runs_seen": 25.0,
        "flow_user_runs_seen": 4.0,
        "same_job_runs_seen": 2.0,
        "hour_of_week": 38.0,
        "hour_runs_seen": 9.0,
    }

    @pytest.mark.parametrize(
        ("name", "value", "usual", "expected"),
        [(n, float(v), float(u), e) for n, v, u, e in (line.split(" | ") for line in PHRASES.strip().splitlines())],
    )
    def test_phrases(self, name: str, value: float, usual: float, expected: str) -> None:
        from forewarn.learning.features.reasons import reason_text

        assert reason_text(name, value, usual, self.ROW) == expected

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("flow_failure_gap_ratio", "no history of this flow's cadence yet (fewer than 2 past runs)"),
            ("flow_gap_ratio", "no history of this flow's cadence yet (fewer than 2 past runs)"),
            ("procs_to_flow_usual", "no history of procs for this flow yet"),
            ("user_failure_rate_smoothed", "no history for user u12 yet"),
            ("flow_user_failure_rate_smoothed", "no history of this flow with user u12 yet"),
            ("same_job_last_ended_failed", "no history of this flow with the same attributes as this run yet"),
        ],
    )
    def test_a_value_holding_its_prior_reads_no_history(self, name: str, expected: str) -> None:
        from forewarn.learning.features.reasons import reason_text

        empty = {
            **self.ROW,
            "flow_runs_seen": 0.0,
            "user_runs_seen": 0.0,
            "flow_user_runs_seen": 0.0,
            "same_job_runs_seen": 0.0,
        }
        assert reason_text(name, 0.7, 0.1, empty) == expected

    def test_no_engineered_feature_falls_back_to_name_equals_value(
        self, simulated: tuple[pd.DataFrame, pd.DataFrame]
    ) -> None:
        """Every non-attribute column of real feature rows has a phrase of its own."""
        from forewarn.learning.features.reasons import reason_text

        runs, _ = simulated
        X = build_features(runs.iloc[-200:], runs)
        usual = X.median(numeric_only=True)
        for _, row in X.iloc[::20].iterrows():
            values = row.to_dict()
            for name in usual.index:
                if name.startswith("feature_"):
                    continue
                text = reason_text(name, values[name], usual[name] + 1.0, values)
                assert text is None or " = " not in text, (name, text)
