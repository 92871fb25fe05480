"""The commands and functions the docs tell a user to run exist in the Prefect forewarn supports."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_no_doc_names_a_resume_command_prefect_lacks(doc: Path) -> None:
    """Prefect 3.9 has no `prefect flow-run resume`: the docs point at the UI or resume_flow_run instead."""
    assert "flow-run resume" not in doc.read_text()


def test_the_documented_resume_function_exists() -> None:
    """docs/warnings.md names prefect.flow_runs.resume_flow_run; it takes a flow run id."""
    import inspect

    from prefect.flow_runs import resume_flow_run

    assert "resume_flow_run" in (ROOT / "docs" / "warnings.md").read_text()
    assert next(iter(inspect.signature(resume_flow_run).parameters)) == "flow_run_id"
