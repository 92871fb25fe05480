"""automations/*.yaml: accepted by a real Prefect API, and fired by forewarn's own events from a real run.

The files are read the way ``prefect automation create --from-file`` reads them (``yaml.safe_load``, then
``AutomationCore.model_validate``, then ``create_automation``) and sent to the session's Prefect API, whose
triggers and actions services run as on any server. A forewarn flow then runs as a deployment's flow run,
its breaker opens and it fails with a transient error: the notification reaches a local webhook, the
deployment is paused and the run is set back to Scheduled, each observed through the API.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore
from prefect.events.schemas.events import Resource

import forewarn
from forewarn import CircuitBreaker

AUTOMATIONS = Path(__file__).resolve().parents[1] / "automations"
PLACEHOLDER_BLOCK = "00000000-0000-0000-0000-000000000000"


def load(name: str, **replace: str) -> AutomationCore:
    text = (AUTOMATIONS / name).read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return AutomationCore.model_validate(yaml.safe_load(text))


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll the real API until ``check()`` is truthy: the server acts asynchronously, in its own process."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.25)


class TestFilesAreValid:
    @pytest.mark.parametrize("name", sorted(p.name for p in AUTOMATIONS.glob("*.yaml")))
    def test_each_file_parses_as_prefect_does(self, name: str) -> None:
        """Each file is one automation Prefect's own model accepts, triggered by a forewarn event."""
        automation = load(name)
        assert automation.name.startswith("forewarn: ")
        assert any(event.startswith("forewarn.") for event in automation.trigger.expect)  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        ("labels", "matches"),
        [
            ({"forewarn.failure-kind": "transient", "forewarn.run-count": "1"}, True),
            ({"forewarn.failure-kind": "transient", "forewarn.run-count": "2"}, True),
            ({"forewarn.failure-kind": "transient", "forewarn.run-count": "3"}, False),  # at most twice
            ({"forewarn.failure-kind": "permanent", "forewarn.run-count": "1"}, False),  # never for bad input
        ],
    )
    def test_rerun_matches_transient_failures_only(self, labels: dict[str, str], matches: bool) -> None:
        """The rerun trigger matches forewarn.flow.failed resources by failure kind and run count."""
        trigger = load("rerun-after-transient-failure.yaml").trigger
        resource = Resource.model_validate({"prefect.resource.id": "prefect.flow-run.abc", **labels})
        assert trigger.match.matches(resource) is matches  # type: ignore[union-attr]


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP endpoint that keeps the JSON bodies posted to it."""
    received: list[dict[str, Any]] = []
    handler = type("Webhook", (_Webhook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/notify", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.usefixtures("prefect_harness")
class TestAgainstARealAPI:
    def test_events_of_a_failing_deployment_run_fire_all_three(self, webhook: tuple[str, list[dict[str, Any]]]) -> None:
        """Breaker opens -> deployment paused; transient flow failure -> notified and rescheduled."""
        from prefect.blocks.notifications import CustomWebhookNotificationBlock
        from prefect.flow_engine import run_flow

        url, received = webhook
        block = CustomWebhookNotificationBlock(
            name="forewarn-test", url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
        )
        block_id = block.save("forewarn-test-webhook", overwrite=True)

        breaker = CircuitBreaker("inventory-api", failure_threshold=2, reset_timeout=600)

        @forewarn.task(retries=3, retry_delay_seconds=0, circuit_breaker=breaker, runbook="Page the inventory team")
        def reserve() -> None:
            raise ConnectionError("inventory-api connection reset")

        @forewarn.flow(name="forewarn-automation-orders", score=False)
        def orders() -> None:
            reserve()

        with get_client(sync_client=True) as client:
            created = [
                client.create_automation(load("notify-on-failure.yaml", **{PLACEHOLDER_BLOCK: str(block_id)})),
                client.create_automation(load("pause-deployment-on-breaker-open.yaml")),
                client.create_automation(load("rerun-after-transient-failure.yaml")),
            ]
            flow_id = client.create_flow_from_name(orders.name)
            deployment_id = client.create_deployment(flow_id=flow_id, name="forewarn-automation-test")
            flow_run = client.create_flow_run_from_deployment(deployment_id)
        try:
            state = run_flow(orders, flow_run=flow_run, return_type="state")
            assert state.is_failed()  # type: ignore[union-attr]
            with get_client(sync_client=True) as client:
                eventually(lambda: client.read_deployment(deployment_id).paused, "the deployment is paused")
                rescheduled = eventually(
                    lambda: (run := client.read_flow_run(flow_run.id)).state_type.value == "SCHEDULED" and run,
                    "the failed run is set back to Scheduled",
                )
            assert rescheduled.state.name == "AwaitingRetry"
            notification = eventually(lambda: received and received[0], "the notification reaches the webhook")
            assert "forewarn-automation-orders failed (transient: CircuitOpenError)" in notification["subject"]
            assert "reserve: 3 attempt(s), CircuitOpenError" in notification["body"]  # the breaker refused the third
            assert "Runbook: Page the inventory team" in notification["body"]
            assert "Circuit breakers opened: inventory-api" in notification["body"]
        finally:
            with get_client(sync_client=True) as client:
                for automation_id in created:
                    client.delete_automation(automation_id)
