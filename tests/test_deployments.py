"""prefect.yaml: every deployment points at a real Prefect flow whose parameters exist."""

from __future__ import annotations

import inspect
from pathlib import Path

import prefect
import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from forewarn import cli
from forewarn.learning.model import DEFAULT_FAMILY

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_entrypoint_is_a_flow_taking_the_parameters(deployment: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each entrypoint loads as a prefect.Flow and accepts every parameter the deployment sets."""
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    assert isinstance(flow, prefect.Flow)
    accepted = set(inspect.signature(flow.fn).parameters)
    assert set(deployment.get("parameters", {})) <= accepted
    assert deployment["work_pool"]["name"] == "forewarn"


def test_model_family_defaults_are_the_library_default() -> None:
    """The CLI spells its default family out (importing the model at start-up would load scikit-learn for
    ``forewarn --help``), and prefect.yaml must name one: both say what ``DEFAULT_FAMILY`` says."""
    for command in (cli.train, cli.backtest):
        assert inspect.signature(command).parameters["family"].default == DEFAULT_FAMILY, command.__name__
    named = {d["name"]: d["parameters"]["family"] for d in DEPLOYMENTS if "family" in d.get("parameters", {})}
    assert named and set(named.values()) == {DEFAULT_FAMILY}, named
