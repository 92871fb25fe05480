"""Shared fixtures: isolated settings and terminal, a SQLite store URL, a PostgreSQL database, a Prefect harness."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Prefect runs offline in tests: no analytics, no update checks. Set before Prefect is imported.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

PG_ADMIN_URL = os.environ.get("FOREWARN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# rich's box drawing (U+2500-U+257F): the frame around a message, not part of what a test checks.
_BOX_DRAWING = re.compile(r"[\u2500-\u257f]")


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the Prefect server is slow: starting the server alone takes 20-50 s here."""
    for item in items:
        if "prefect_harness" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def model_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One model key file for the whole session, never the user's ~/.local/share/forewarn/model.key.

    Set for the session too, so module-scoped fixtures that train a model (before any test's own settings
    apply) sign it with the key the tests then verify with.
    """
    path = tmp_path_factory.mktemp("model-key") / "model.key"
    with pytest.MonkeyPatch.context() as session_patch:
        session_patch.setenv("FOREWARN_MODEL_KEY_FILE", str(path))
        yield path


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_key_file: Path) -> Iterator[None]:
    """Every test starts from default settings with its own SQLite store, model and cache directory.

    It already runs in its own empty directory with no FOREWARN_* variable of the caller's (../conftest.py).
    The model key file is the session's (:func:`model_key_file`).
    """
    monkeypatch.setenv("FOREWARN_DB_URL", f"sqlite:///{tmp_path / 'telemetry.db'}")
    monkeypatch.setenv("FOREWARN_MODEL_KEY_FILE", str(model_key_file))
    monkeypatch.setenv("FOREWARN_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("FOREWARN_CACHE_DIR", str(tmp_path / "cache"))  # never the user's ~/.cache
    monkeypatch.setenv("FOREWARN_SPOOL_DIR", str(tmp_path / "spool"))  # nor ~/.local/share
    from forewarn.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def normalize() -> Callable[[str], str]:
    """A function that drops rich's box drawing from terminal text and collapses all whitespace to one space.

    Check CLI output through it when a line may wrap whatever the width, e.g. around a long temporary path.
    """

    def normalized(text: str) -> str:
        return " ".join(_BOX_DRAWING.sub(" ", text).split())

    return normalized


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite store file in this test's directory."""
    return f"sqlite:///{tmp_path / 'store.db'}"


def _pg_reachable() -> str | None:
    """None when the PostgreSQL server answers, else the reason it does not."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any driver or network failure means "not reachable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL of the PostgreSQL server; skips (or fails under CI=true) when it is down."""
    reason = _pg_reachable()
    if reason is not None:
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL.split('@')[-1]} ({reason})"
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires it (.ci/run starts it)")
        pytest.skip(message)
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """URL of a brand-new PostgreSQL database, dropped after the test."""
    import sqlalchemy as sa

    name = f"forewarn_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on a real PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for the whole session (Prefect's own prefect_test_harness)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
