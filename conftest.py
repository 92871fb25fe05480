"""Isolation for everything pytest runs here, the doctests in src/ included (tests/conftest.py adds the rest).

settings read ``FOREWARN_*`` variables and ``./.env``; neither may come from the shell or the checkout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Each test runs in its own directory, so a relative PYTHONPATH such as PYTHONPATH=src would send the
# processes a test starts to whatever forewarn is installed; anchor it to where pytest was started.
if os.environ.get("PYTHONPATH"):
    os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in os.environ["PYTHONPATH"].split(os.pathsep))


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
