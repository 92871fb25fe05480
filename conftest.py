"""Isolation for everything pytest runs here, the doctests in src/ included (tests/conftest.py adds the rest).

settings read ``FOREWARN_*`` variables and ``./.env``, and rich and pandas lay text out for the terminal's
width; none of these may come from the shell or the checkout.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Each test runs in its own directory, so a relative PYTHONPATH such as PYTHONPATH=src would send the
# processes a test starts to whatever forewarn is installed; anchor it to where pytest was started.
if os.environ.get("PYTHONPATH"):
    os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in os.environ["PYTHONPATH"].split(os.pathsep))

# The width every test's terminal has, whatever COLUMNS the machine running the suite has.
TERMINAL_COLUMNS = 100


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test and doctest runs in its own empty directory, with no ``FOREWARN_*`` variable of the caller's.

    The directory keeps a developer's ``.env`` in the checkout away from the settings (and from the processes
    a test starts); FOREWARN_TEST_PG_URL names the test database, not a setting, so it stays.
    """
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("FOREWARN_") and key != "FOREWARN_TEST_PG_URL":
            monkeypatch.delenv(key)
    from forewarn.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def terminal_columns(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Every test sees a terminal TERMINAL_COLUMNS wide; call the fixture's value to give it another width.

    rich reads COLUMNS when a console is built (typer builds one for each usage error) and pandas each time
    it prints a frame, but forewarn's CLI builds its consoles at import, so those are resized here too.
    """

    def resize(columns: int) -> None:
        monkeypatch.setenv("COLUMNS", str(columns))
        monkeypatch.setenv("TERMINAL_WIDTH", str(columns))
        if "typer.rich_utils" in sys.modules:  # typer reads TERMINAL_WIDTH once, at import
            monkeypatch.setattr(sys.modules["typer.rich_utils"], "MAX_WIDTH", columns)
        cli = sys.modules.get("forewarn.cli")
        for console in (getattr(cli, "console", None), getattr(cli, "err_console", None)):
            if console is not None:
                monkeypatch.setattr(console, "width", columns)

    resize(TERMINAL_COLUMNS)
    return resize
