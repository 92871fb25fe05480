"""Model files that cannot be swapped: a signature keyed outside the models directory, checked before unpickling.

The attack (issue 8, item 1): replace ``model.joblib`` with a pickle that runs code when loaded and write
its SHA-256 into ``manifest.json``. Every way forewarn loads a model must refuse it without unpickling -
the marker file the pickle would create never appears.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.errors import ChecksumMismatchError, ConfigurationError, UntrustedModelError
from forewarn.learning.features import build_features, failure_labels
from forewarn.learning.model import FailureWarningModel, load_model, save_model
from forewarn.orchestration.warning import warn_before_run
from forewarn.records import FlowRunRecord
from forewarn.scoring import clear_model_cache, configured_model_key, load_current_model
from forewarn.settings import get_settings, load_settings
from forewarn.store import TelemetryStore
from test_warning import DOOMED, NOT_SCORED, _prefect_logging_configured, fleet, lines, run  # noqa: F401

KEY = "k" * 40
OTHER_KEY = "o" * 40
WINDOW = (datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 6, 1, tzinfo=timezone.utc))


class Marker:
    """A pickle that, when unpickled, creates the file at ``path`` (what an attacker's code would do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.fixture(scope="module")
def fitted() -> FailureWarningModel:
    """A small fitted model, not saved (each test saves it where and how it needs)."""
    runs = fleet(WINDOW[1], hours=300)
    model = FailureWarningModel(family="logreg", min_runs=100, min_failures=10)
    return model.fit(build_features(runs), failure_labels(runs))


@pytest.fixture
def saved(fitted: FailureWarningModel, tmp_path: Path) -> Path:
    """A models directory holding the fitted model, signed with the session's key file."""
    directory = tmp_path / "models"
    save_model(fitted, directory, training_window=WINDOW, key=configured_model_key(create=True))
    return directory


def version_of(directory: Path) -> Path:
    return directory / json.loads((directory / "latest.json").read_text())["version"]


def plant_malicious_pickle(directory: Path, marker: Path) -> None:
    """Swap the artifact for a code-running pickle and write its SHA-256 into the manifest, as the attacker."""
    version = version_of(directory)
    joblib.dump(Marker(marker), version / "model.joblib")
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["sha256"] = hashlib.sha256((version / "model.joblib").read_bytes()).hexdigest()
    (version / "manifest.json").write_text(json.dumps(manifest))


class KeptLines(logging.Handler):
    """A handler that keeps the messages it is given."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def use_setting(monkeypatch: pytest.MonkeyPatch, variable: str, value: str | Path) -> None:
    """Set one FOREWARN_* variable for this test and make the settings read it again."""
    monkeypatch.setenv(variable, str(value))
    get_settings.cache_clear()


def use_model_dir(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_setting(monkeypatch, "FOREWARN_MODEL_DIR", directory)
    clear_model_cache()


def test_the_planted_pickle_would_run_code(tmp_path: Path) -> None:
    """The attack is real: unpickling the planted artifact creates the marker (so its absence below means something)."""
    joblib.dump(Marker(tmp_path / "marker"), tmp_path / "evil.joblib")
    joblib.load(tmp_path / "evil.joblib")
    assert (tmp_path / "marker").exists()


class TestMaliciousPickle:
    """A swapped artifact with a matching SHA-256 is refused by every loader, before it is unpickled."""

    def test_load_model(self, saved: Path, tmp_path: Path) -> None:
        plant_malicious_pickle(saved, tmp_path / "marker")
        with pytest.raises(UntrustedModelError, match=r"does not carry a valid signature.*NOT loaded"):
            load_model(saved, key=configured_model_key())
        assert not (tmp_path / "marker").exists()

    def test_load_current_model(self, saved: Path, tmp_path: Path) -> None:
        plant_malicious_pickle(saved, tmp_path / "marker")
        clear_model_cache()
        with pytest.raises(UntrustedModelError, match="forewarn train"):
            load_current_model(saved)
        assert not (tmp_path / "marker").exists()

    def test_pre_run_hook(self, saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The hook, called as forewarn.flow calls it: unscored, one WARNING line saying the model is untrusted."""
        plant_malicious_pickle(saved, tmp_path / "marker")
        use_model_dir(saved, monkeypatch)
        now = datetime.now(timezone.utc)
        record = FlowRunRecord(flow_run_id="r1", flow_name=DOOMED, scheduled_start=now, start_time=now)
        kept = KeptLines()
        hook_logger = logging.getLogger("forewarn.warning")  # Prefect's logging set-up keeps it from caplog
        hook_logger.addHandler(kept)
        try:
            assert warn_before_run(record) is None
        finally:
            hook_logger.removeHandler(kept)
        messages = [m for m in kept.messages if m.startswith("forewarn")]
        assert len(messages) == 1 and NOT_SCORED in messages[0] and "not trusted" in messages[0], messages
        assert not (tmp_path / "marker").exists()

    @pytest.mark.usefixtures("prefect_harness")
    def test_flow_runs_unscored(self, lines: Any, saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
        """A real forewarn.flow run completes unscored, with one clear log line, and the code never ran."""
        plant_malicious_pickle(saved, tmp_path / "marker")
        use_model_dir(saved, monkeypatch)
        state = run(DOOMED)
        assert state.is_completed()
        (line,) = lines()
        assert line[0] == "WARNING" and NOT_SCORED in line[1] and "not trusted" in line[1], line
        assert not (tmp_path / "marker").exists()

    def test_forecast_command(self, saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """`forewarn forecast` refuses the model (it loads it before asking Prefect for runs)."""
        plant_malicious_pickle(saved, tmp_path / "marker")
        use_model_dir(saved, monkeypatch)
        TelemetryStore().close()  # the store the model learned from (forecast opens an existing one only)
        result = CliRunner().invoke(app, ["forecast"])
        assert result.exit_code != 0
        assert "valid signature" in " ".join(result.output.split())
        assert not (tmp_path / "marker").exists()


class TestKey:
    def test_right_key_loads(
        self, fitted: FailureWarningModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A model saved and loaded under the same FOREWARN_MODEL_KEY loads and scores like the original."""
        use_setting(monkeypatch, "FOREWARN_MODEL_KEY", KEY)
        manifest = save_model(fitted, tmp_path / "m", training_window=WINDOW, key=configured_model_key(create=True))
        model, loaded = load_model(tmp_path / "m", key=configured_model_key())
        assert loaded.version == manifest.version
        assert model.threshold_ == fitted.threshold_

    def test_wrong_key_refused(
        self, fitted: FailureWarningModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        save_model(fitted, tmp_path / "m", training_window=WINDOW, key=KEY)
        use_setting(monkeypatch, "FOREWARN_MODEL_KEY", OTHER_KEY)
        with pytest.raises(UntrustedModelError, match=r"FOREWARN_MODEL_KEY.*saved with another key"):
            load_model(tmp_path / "m", key=configured_model_key())
        assert load_model(tmp_path / "m", key=KEY)[1].sha256

    def test_no_key_refused_and_not_created_by_loading(
        self, saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        missing = tmp_path / "elsewhere" / "model.key"
        use_setting(monkeypatch, "FOREWARN_MODEL_KEY_FILE", missing)
        with pytest.raises(UntrustedModelError, match=r"no model key.*does not exist"):
            configured_model_key()
        assert not missing.exists()

    def test_saving_creates_a_private_key_file(
        self, fitted: FailureWarningModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        key_file = tmp_path / "data" / "model.key"
        use_setting(monkeypatch, "FOREWARN_MODEL_KEY_FILE", key_file)
        save_model(fitted, tmp_path / "m", training_window=WINDOW, key=configured_model_key(create=True))
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        first = key_file.read_bytes()
        save_model(fitted, tmp_path / "m", training_window=WINDOW, key=configured_model_key(create=True))
        assert key_file.read_bytes() == first  # an existing key is kept, or older models would stop verifying
        assert [p.name for p in key_file.parent.iterdir()] == ["model.key"]  # no temporary file left
        load_model(tmp_path / "m", key=configured_model_key())

    def test_key_file_readable_by_others_refused(self, saved: Path, model_key_file: Path) -> None:
        model_key_file.chmod(0o644)
        try:
            with pytest.raises(UntrustedModelError, match=f"chmod 600 {model_key_file}"):
                load_current_model(saved)
        finally:
            model_key_file.chmod(0o600)

    def test_key_file_inside_models_dir_refused_by_training(
        self, fitted: FailureWarningModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Training refuses a key file that would lie beside its models, before creating the key or the dir."""
        inside = tmp_path / "m" / "model.key"
        use_setting(monkeypatch, "FOREWARN_MODEL_KEY_FILE", inside)
        with pytest.raises(UntrustedModelError, match="inside the models directory"):
            configured_model_key(create=True, model_dir=tmp_path / "m")
        assert not (tmp_path / "m").exists()
        (tmp_path / "m").mkdir(mode=0o700)
        key = configured_model_key(create=True)  # a caller that does not say where it will save
        with pytest.raises(UntrustedModelError, match="inside the models directory"):
            save_model(fitted, tmp_path / "m", training_window=WINDOW, key=key)
        assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.key"]  # no model half-written

    @pytest.mark.parametrize("loader", ["load_model", "load_current_model"])
    def test_key_file_inside_models_dir_refused_by_loading(
        self, saved: Path, model_key_file: Path, monkeypatch: pytest.MonkeyPatch, loader: str
    ) -> None:
        """Whoever can write the models directory could plant a key there and sign a model with it."""
        planted = saved / "model.key"
        shutil.copy(model_key_file, planted)  # the same key, and mode 0600: only its place is wrong
        use_setting(monkeypatch, "FOREWARN_MODEL_KEY_FILE", planted)
        clear_model_cache()
        with pytest.raises(UntrustedModelError, match="inside the models directory"):
            if loader == "load_model":
                load_model(saved, key=configured_model_key())
            else:
                load_current_model(saved)

    def test_short_key_argument_refused_before_writing(self, fitted: FailureWarningModel, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="at least 32 characters"):
            save_model(fitted, tmp_path / "m", training_window=WINDOW, key="short")
        assert not (tmp_path / "m").exists()

    def test_info_does_not_show_the_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        use_setting(monkeypatch, "FOREWARN_MODEL_KEY", KEY)
        result = CliRunner().invoke(app, ["info"])
        assert result.exit_code == 0 and "FOREWARN_MODEL_KEY = **********" in result.output
        assert KEY not in result.output

    def test_short_key_setting_refused_without_echo(self) -> None:
        with pytest.raises(ConfigurationError, match=r"FOREWARN_MODEL_KEY.*at least 32") as info:
            load_settings(_environ={}, model_key="hunter2-secret")
        assert "hunter2" not in str(info.value)


class TestFiles:
    def test_unsigned_model_refused(self, saved: Path, tmp_path: Path) -> None:
        """A model saved before models were signed (no manifest.hmac) is refused with 'retrain'."""
        (version_of(saved) / "manifest.hmac").unlink()
        with pytest.raises(UntrustedModelError, match=r"no signature.*Retrain with `forewarn train`"):
            load_model(saved, key=configured_model_key())

    def test_damaged_artifact_is_a_checksum_error(self, saved: Path) -> None:
        with open(version_of(saved) / "model.joblib", "ab") as fh:
            fh.write(b"\x00")
        with pytest.raises(ChecksumMismatchError):
            load_model(saved, key=configured_model_key())

    @pytest.mark.parametrize("loader", ["load_model", "load_current_model"])
    @pytest.mark.parametrize("which", ["dir", "version", "model.joblib", "manifest.json", "latest.json"])
    def test_group_writable_refused(self, saved: Path, which: str, loader: str) -> None:
        """Both loaders check from the models directory down: scoring (load_current_model) as much as load_model."""
        target = {"dir": saved, "version": version_of(saved), "latest.json": saved / "latest.json"}.get(
            which, version_of(saved) / which
        )
        target.chmod(stat.S_IMODE(target.stat().st_mode) | stat.S_IWGRP)
        clear_model_cache()
        with pytest.raises(UntrustedModelError, match=rf"writable by group.*chmod go-w {target}"):
            if loader == "load_model":
                load_model(saved, key=configured_model_key())
            else:
                load_current_model(saved)

    def test_save_refuses_a_group_writable_dir(self, fitted: FailureWarningModel, tmp_path: Path) -> None:
        (tmp_path / "m").mkdir(mode=0o775)
        (tmp_path / "m").chmod(0o775)
        with pytest.raises(UntrustedModelError, match=r"NOT saved\. Fix: chmod go-w"):
            save_model(fitted, tmp_path / "m", training_window=WINDOW, key=KEY)
        assert list((tmp_path / "m").iterdir()) == []  # nothing half-written

    def test_saved_under_a_loose_umask_is_still_private(self, fitted: FailureWarningModel, tmp_path: Path) -> None:
        old = os.umask(0o002)
        try:
            save_model(fitted, tmp_path / "m", training_window=WINDOW, key=KEY)
        finally:
            os.umask(old)
        assert load_model(tmp_path / "m", key=KEY)[1].version

    def test_symlink_escaping_the_dir_refused(self, saved: Path, tmp_path: Path) -> None:
        """A version directory replaced by a link to a copy outside the models directory is refused."""
        version = version_of(saved)
        shutil.move(version, tmp_path / "outside")
        version.symlink_to(tmp_path / "outside")
        with pytest.raises(UntrustedModelError, match="leads outside the models directory"):
            load_model(saved, key=configured_model_key())

    def test_pointer_escaping_the_dir_refused(self, saved: Path, tmp_path: Path) -> None:
        shutil.copytree(version_of(saved), tmp_path / "outside")
        (saved / "latest.json").write_text(json.dumps({"manifest": "../outside/manifest.json"}))
        with pytest.raises(UntrustedModelError, match="leads outside the models directory"):
            load_model(saved, key=configured_model_key())


class TestDefaultDirectory:
    def test_default_model_dir_is_absolute_under_the_data_dir(self, tmp_path: Path) -> None:
        """Unset, FOREWARN_MODEL_DIR is $XDG_DATA_HOME/forewarn/models whatever the working directory."""
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv("FOREWARN_MODEL_DIR", raising=False)
            patch.delenv("FOREWARN_MODEL_KEY_FILE", raising=False)
            patch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
            settings = load_settings()
        assert settings.model_dir == tmp_path / "xdg" / "forewarn" / "models"
        assert settings.model_dir.is_absolute()
        assert settings.model_key_file == tmp_path / "xdg" / "forewarn" / "model.key"

    def test_override_kept(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("FOREWARN_MODEL_DIR", str(tmp_path / "mine"))
        assert load_settings().model_dir == tmp_path / "mine"
