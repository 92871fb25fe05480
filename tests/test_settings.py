"""Typed settings: defaults, validation errors that name the variable, overrides, unknown variables."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from forewarn import errors
from forewarn.errors import ConfigurationError
from forewarn.settings import ForewarnSettings, default_cache_dir, default_db_path, get_settings, load_settings


class TestDefaults:
    def test_default_db_is_per_user_sqlite(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without FOREWARN_DB_URL the store is a SQLite file under XDG_DATA_HOME/forewarn."""
        monkeypatch.delenv("FOREWARN_DB_URL")
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
        assert default_db_path() == tmp_path / "forewarn" / "telemetry.db"
        assert load_settings().db_url == f"sqlite:///{tmp_path}/forewarn/telemetry.db"

    def test_default_cache_dir_is_per_user_cache(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without FOREWARN_CACHE_DIR the history snapshot lives under XDG_CACHE_HOME/forewarn (~/.cache)."""
        monkeypatch.delenv("FOREWARN_CACHE_DIR")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        assert default_cache_dir() == tmp_path / "forewarn"
        assert load_settings().cache_dir == tmp_path / "forewarn"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert load_settings().cache_dir == Path.home() / ".cache" / "forewarn"

    @pytest.mark.parametrize("value", ["", "   "])
    def test_an_empty_cache_dir_turns_the_snapshot_off(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        """FOREWARN_CACHE_DIR= (empty) means no snapshot is read or written; overrides keep it off."""
        monkeypatch.setenv("FOREWARN_CACHE_DIR", value)
        settings = load_settings()
        assert settings.cache_dir is None
        assert settings.with_overrides(retries=1).cache_dir is None

    @pytest.mark.parametrize("name", ["FOREWARN_DB_URL", "FOREWARN_MODEL_DIR", "FOREWARN_MODEL_KEY_FILE"])
    def test_an_empty_store_or_model_setting_means_the_default(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
    ) -> None:
        """prefect.yaml's ``"{{ $FOREWARN_DB_URL }}"`` reaches a run as "" when unset at deploy: the default."""
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
        for variable in ("FOREWARN_DB_URL", "FOREWARN_MODEL_DIR", "FOREWARN_MODEL_KEY_FILE"):
            monkeypatch.delenv(variable, raising=False)
        defaults = load_settings()
        monkeypatch.setenv(name, " ")
        settings = load_settings()
        field = name.removeprefix("FOREWARN_").lower()
        assert getattr(settings, field) == getattr(defaults, field)
        assert str(tmp_path / "forewarn") in str(getattr(settings, field))

    def test_cache_dir_expands_the_home_directory(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """~ in FOREWARN_CACHE_DIR is the user's home, as in a shell."""
        monkeypatch.setenv("FOREWARN_CACHE_DIR", "~/forewarn-cache")
        assert load_settings().cache_dir == Path.home() / "forewarn-cache"
        assert load_settings(cache_dir="/srv/cache").cache_dir == Path("/srv/cache")

    def test_every_field_has_a_description(self) -> None:
        """Each setting documents itself (the README table is built from the same text)."""
        assert all(field.description for field in ForewarnSettings.model_fields.values())

    def test_environment_is_read(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """FOREWARN_<NAME> sets <name>."""
        monkeypatch.setenv("FOREWARN_RETRIES", "7")
        monkeypatch.setenv("FOREWARN_WARNING_POLICY", "harden")
        settings = load_settings()
        assert (settings.retries, settings.warning_policy) == (7, "harden")


class TestValidation:
    @pytest.mark.parametrize(
        ("variable", "value", "expected_words"),
        [
            ("FOREWARN_RETRIES", "-1", "greater than or equal to 0"),
            ("FOREWARN_RETRIES", "three", "integer"),
            ("FOREWARN_DB_URL", "not a url", "sqlite:///"),
            ("FOREWARN_DB_URL", "mysql://u:pw@h/db", "not a mysql URL"),
            ("FOREWARN_WARNING_POLICY", "panic", "warn"),
            ("FOREWARN_REDACT_PATTERNS", '["(unclosed"]', "regular expressions"),
            ("FOREWARN_WAIT_INITIAL", "-0.5", "greater than or equal to 0"),
            # waits are finite and bounded: inf would fail the flow with OverflowError at its first retry
            ("FOREWARN_WAIT_INITIAL", "inf", "finite number (Default first backoff wait, in seconds, from 0 to"),
            ("FOREWARN_WAIT_INITIAL", "nan", "finite number"),
            ("FOREWARN_WAIT_INITIAL", "-inf", "finite number"),
            ("FOREWARN_WAIT_MAX", "Infinity", "finite number"),
            ("FOREWARN_WAIT_MAX", "1e9", "less than or equal to 86400"),
            ("FOREWARN_WAIT_JITTER", "NaN", "finite number"),
            ("FOREWARN_WAIT_JITTER", "86401", "less than or equal to 86400"),
            ("FOREWARN_WAIT_EXP_BASE", "inf", "finite number"),
            ("FOREWARN_WAIT_EXP_BASE", "1000", "less than or equal to 100"),
        ],
    )
    def test_bad_value_names_the_variable_and_the_form(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected_words: str
    ) -> None:
        """A bad value fails at start naming the variable and what it accepts."""
        monkeypatch.setenv(variable, value)
        with pytest.raises(ConfigurationError) as info:
            load_settings()
        assert info.value.setting == variable
        assert expected_words in str(info.value)

    def test_the_largest_waits_build_a_policy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Every value the settings accept is one RetryPolicy accepts too: the bounds are shared."""
        from forewarn.limits import MAX_WAIT_EXP_BASE, MAX_WAIT_SECONDS
        from forewarn.resilience.retry import RetryPolicy

        for name in ("WAIT_INITIAL", "WAIT_MAX", "WAIT_JITTER"):
            monkeypatch.setenv(f"FOREWARN_{name}", str(MAX_WAIT_SECONDS))
        monkeypatch.setenv("FOREWARN_WAIT_EXP_BASE", str(MAX_WAIT_EXP_BASE))
        policy = RetryPolicy.from_settings(load_settings())
        assert policy.wait(50, rand=lambda: 1.0) == MAX_WAIT_SECONDS

    @pytest.mark.parametrize(
        "url",
        [
            "postgresql+asyncpg://u:pw@h/db",
            "postgresql+psycopg2://u:pw@h/db",
            "postgresql+pg8000://u:pw@h/db",
            "sqlite+aiosqlite:///x.db",
            "mysql+pymysql://u:pw@h/db",
        ],
    )
    def test_only_drivers_the_store_opens(self, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
        """A driver the store would refuse is refused at start, naming the accepted forms."""
        monkeypatch.setenv("FOREWARN_DB_URL", url)
        with pytest.raises(ConfigurationError) as info:
            load_settings()
        assert info.value.setting == "FOREWARN_DB_URL"
        assert f"not a {url.split('://')[0]} URL" in str(info.value)
        assert "sqlite:///PATH" in str(info.value) and "postgresql+psycopg://" in str(info.value)
        assert "pw" not in str(info.value.value)

    @pytest.mark.parametrize(
        "url",
        [
            "sqlite:///x.db",
            "sqlite+pysqlite:///x.db",
            "sqlite://",
            "postgresql://u:pw@h/db",
            "postgresql+psycopg://u:pw@h/db",
            "postgresql+asyncpg://u:pw@h/db",
            "postgresql+psycopg2://u:pw@h/db",
            "mysql://u:pw@h/db",
            "sqlite+aiosqlite:///x.db",
        ],
    )
    def test_settings_accept_exactly_what_the_store_opens(self, url: str) -> None:
        """The settings' driver list and the store's URL check agree, one URL at a time."""
        from forewarn.store._engine import parse_url

        try:
            parse_url(url, "url")
            store_opens = True
        except ConfigurationError:
            store_opens = False
        try:
            load_settings(db_url=url, _environ={})
            settings_accept = True
        except ConfigurationError:
            settings_accept = False
        assert settings_accept == store_opens

    @pytest.mark.parametrize(
        ("value", "expected_words"),
        [
            ("secret-\\w+", "not JSON"),
            ("['single quotes']", "not JSON"),
            ('{"password": 1}', "not a JSON dict"),
            ('"one pattern"', "not a JSON str"),
            ('["ok", 3]', "item 1 is 3"),
            ('["(unclosed"]', "regular expressions"),
        ],
    )
    def test_redact_patterns_must_be_a_json_list_of_regexes(
        self, monkeypatch: pytest.MonkeyPatch, value: str, expected_words: str
    ) -> None:
        """A malformed FOREWARN_REDACT_PATTERNS names the variable and the JSON form, not a pydantic traceback."""
        monkeypatch.setenv("FOREWARN_REDACT_PATTERNS", value)
        with pytest.raises(ConfigurationError) as info:
            load_settings()
        assert info.value.setting == "FOREWARN_REDACT_PATTERNS"
        assert expected_words in str(info.value)
        assert "JSON list" in str(info.value)

    def test_redact_patterns_json_is_read(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A JSON list in the variable becomes the patterns; a Python list passed in stays one."""
        monkeypatch.setenv("FOREWARN_REDACT_PATTERNS", '["secret-\\\\w+", "token=\\\\S+"]')
        assert load_settings().redact_patterns == ["secret-\\w+", "token=\\S+"]
        assert load_settings(redact_patterns=["x+"]).redact_patterns == ["x+"]

    def test_a_list_setting_pydantic_cannot_decode_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Any JSON-valued setting (e.g. one added later) that fails to decode is a ConfigurationError naming it."""
        import forewarn.settings

        class WithMapping(ForewarnSettings):
            limits_by_flow: dict[str, int] = {}

        monkeypatch.setattr(forewarn.settings, "ForewarnSettings", WithMapping)
        monkeypatch.setenv("FOREWARN_LIMITS_BY_FLOW", "{not json")
        with pytest.raises(ConfigurationError) as info:
            load_settings()
        assert (info.value.setting, info.value.value) == ("FOREWARN_LIMITS_BY_FLOW", "{not json")

    def test_unknown_variable_is_an_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A typo such as FOREWARN_DB_ULR does not silently fall back to the default."""
        monkeypatch.setenv("FOREWARN_DB_ULR", "sqlite:///x.db")
        with pytest.raises(ConfigurationError, match=r"FOREWARN_DB_ULR.*FOREWARN_DB_URL"):
            load_settings()

    def test_password_never_in_the_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A rejected URL is shown with its password masked."""
        monkeypatch.setenv("FOREWARN_DB_URL", "mysql://user:hunter2@db/x")
        with pytest.raises(ConfigurationError) as info:
            load_settings()
        assert "hunter2" not in str(info.value) and "***" in str(info.value)

    def test_overrides_return_new_validated_settings(self) -> None:
        """with_overrides leaves the original alone and validates the change."""
        settings = load_settings()
        assert settings.with_overrides(retries=5).retries == 5
        assert settings.retries == 3
        with pytest.raises(ConfigurationError, match="FOREWARN_RETRIES"):
            settings.with_overrides(retries=-2)

    def test_get_settings_is_cached_until_cleared(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """get_settings reads the environment once; cache_clear rereads it."""
        first = get_settings()
        monkeypatch.setenv("FOREWARN_RETRIES", "9")
        assert get_settings() is first
        get_settings.cache_clear()
        assert get_settings().retries == 9


class TestDotEnv:
    """A ``.env`` file in the working directory is read like the environment (each test runs in its tmp_path)."""

    def test_dotenv_in_the_working_directory_is_read(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Its FOREWARN_* values are settings; a variable in the environment wins over the file."""
        (tmp_path / ".env").write_text("FOREWARN_RETRIES=7\nFOREWARN_WARNING_POLICY=harden\n")
        settings = load_settings()
        assert (settings.retries, settings.warning_policy) == (7, "harden")
        monkeypatch.setenv("FOREWARN_RETRIES", "2")
        assert load_settings().retries == 2

    def test_unknown_variable_in_dotenv_is_an_error(self, tmp_path: Path) -> None:
        """A typo in .env is refused as it is in the environment, not silently ignored."""
        (tmp_path / ".env").write_text("FOREWARN_DB_ULR=sqlite:///x.db\n")
        with pytest.raises(ConfigurationError) as info:
            load_settings()
        assert info.value.setting.upper() == "FOREWARN_DB_ULR"

    def test_bad_json_in_dotenv_names_the_variable(self, tmp_path: Path) -> None:
        """A non-JSON FOREWARN_REDACT_PATTERNS in .env is a ConfigurationError too."""
        (tmp_path / ".env").write_text("FOREWARN_REDACT_PATTERNS=password\n")
        with pytest.raises(ConfigurationError) as info:
            load_settings()
        assert info.value.setting == "FOREWARN_REDACT_PATTERNS"
        assert "not JSON" in str(info.value)

    def test_bad_value_in_dotenv_names_the_variable(self, tmp_path: Path) -> None:
        """A value in .env is validated like one from the environment."""
        (tmp_path / ".env").write_text("FOREWARN_RETRIES=lots\n")
        with pytest.raises(ConfigurationError) as info:
            load_settings()
        assert info.value.setting == "FOREWARN_RETRIES"


class TestErrors:
    @pytest.mark.parametrize(
        "error",
        [
            errors.ConfigurationError("FOREWARN_RETRIES", "-1", "a whole number"),
            errors.FallbackError("charge", ConnectionError("a"), RuntimeError("b")),
            errors.AttemptTimeoutError("ship", 2.5),
            errors.CircuitOpenError("payments", 3.0),
            errors.StoreUnreachableError("down", url="postgresql://u:***@h/db"),
            errors.ChecksumMismatchError("tampered", path="models/v1/model.joblib"),
            errors.ImportValidationError("runs.csv", [(3, "unknown state 'DONE'")]),
            errors.ImportValidationError("runs.csv", [(3, "unknown state 'DONE'")], skippable=True),
        ],
    )
    def test_errors_survive_pickling(self, error: Exception) -> None:
        """Prefect may pickle a failed state's exception: the message and context survive."""
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)

    def test_bad_input_errors_are_value_errors(self) -> None:
        """Configuration and input errors can be caught as ValueError."""
        assert issubclass(errors.ConfigurationError, ValueError)
        assert issubclass(errors.ImportValidationError, ValueError)
        assert issubclass(errors.AttemptTimeoutError, TimeoutError)
