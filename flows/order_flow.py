"""Example business flow: an e-commerce order, step by step, on fake services with seeded faults.

validate order -> reserve inventory -> charge payment (fallback: a secondary gateway)
-> arrange shipping -> notify customer (fallback: queue the notification for later)

The first four steps are a saga: they run inside one Prefect transaction, so when a later step fails
for good (shipping cannot be booked), the steps that already succeeded are undone, the latest first:
the payment is refunded, then the inventory released (``compensate=``, recorded as ``compensated``
attempts), and the run fails.

Each fake service asks a :class:`forewarn.resilience.chaos.FaultInjector` whether to fail, so the flow's parameters
decide how rough the day is: ``transient_rate`` (connection resets that a retry fixes), ``permanent_rate``
(bad input that no retry fixes) and ``latency_seconds``. The same ``seed`` gives the same faults.

Run one order::

    python flows/order_flow.py

or serve it from the Prefect UI through ``prefect.yaml`` (deployment ``orders``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.transactions import transaction

import forewarn
from forewarn import FaultInjector, RetryPolicy

# Short waits so the demo finishes quickly; a real payment gateway wants seconds, not milliseconds.
DEMO_POLICY = RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.2, wait_jitter=0.01)


@dataclass
class OrderServices:
    """The fake services one order run talks to, sharing one seeded fault injector."""

    faults: FaultInjector
    undone: list[str] = field(default_factory=list)
    """Undo actions taken, in order (the saga's compensations)."""

    def call(self, operation: str, result: Any) -> Any:
        self.faults.maybe_fail(operation)
        return result


def _services(seed: int, transient_rate: float, permanent_rate: float, latency_seconds: float) -> OrderServices:
    return OrderServices(
        FaultInjector(
            seed,
            transient_rate=transient_rate,
            permanent_rate=permanent_rate,
            latency_rate=1.0 if latency_seconds > 0 else 0.0,
            latency_seconds=latency_seconds,
        )
    )


@forewarn.task(retry=DEMO_POLICY, cache_policy=NO_CACHE)
def validate_order(services: OrderServices, order_id: str, amount: float) -> dict[str, Any]:
    """Reject malformed orders at once: a ValueError is permanent, so it is never retried."""
    if amount <= 0:
        raise ValueError(f"order {order_id}: amount must be positive, got {amount}")
    return services.call("orders.validate", {"order_id": order_id, "amount": amount})


def release_inventory(reservation: str, services: OrderServices, order: dict[str, Any]) -> None:
    """Undo of reserve_inventory: put the reserved stock back."""
    services.undone.append(f"released {reservation}")


@forewarn.task(retry=DEMO_POLICY, cache_policy=NO_CACHE, compensate=release_inventory)
def reserve_inventory(services: OrderServices, order: dict[str, Any]) -> str:
    """Reserve stock for the order in the warehouse service."""
    return services.call("inventory.reserve", f"rsv-{order['order_id']}")


def charge_secondary_gateway(exc: Exception, services: OrderServices, order: dict[str, Any]) -> str:
    """Fallback: the primary gateway has failed for good, so charge through the secondary one."""
    return services.call("payments.secondary.charge", f"ch2-{order['order_id']}")


def refund_payment(charge: str, services: OrderServices, order: dict[str, Any]) -> None:
    """Undo of charge_payment: refund the charge on the gateway that took it."""
    services.undone.append(f"refunded {charge}")


@forewarn.task(
    retry=DEMO_POLICY,
    retry_on=(ConnectionError, TimeoutError),
    fallback=charge_secondary_gateway,
    compensate=refund_payment,
    cache_policy=NO_CACHE,
)
def charge_payment(services: OrderServices, order: dict[str, Any]) -> str:
    """Charge the customer on the primary gateway; fall back to the secondary gateway."""
    return services.call("payments.primary.charge", f"ch1-{order['order_id']}")


@forewarn.task(retry=DEMO_POLICY, cache_policy=NO_CACHE)
def arrange_shipping(services: OrderServices, order: dict[str, Any], reservation: str) -> str:
    """Book a carrier for the reserved goods."""
    return services.call("shipping.book", f"shp-{order['order_id']}")


def queue_notification(exc: Exception, services: OrderServices, order: dict[str, Any], tracking: str) -> str:
    """Fallback: the mailer is down; queue the notification so a later job sends it."""
    return f"queued-{order['order_id']}"


@forewarn.task(retry=DEMO_POLICY, fallback=queue_notification, cache_policy=NO_CACHE)
def notify_customer(services: OrderServices, order: dict[str, Any], tracking: str) -> str:
    """E-mail the customer their tracking number."""
    return services.call("notifications.send", f"sent-{order['order_id']}")


def order_features(parameters: dict[str, Any]) -> dict[str, Any]:
    """Attributes known before an order run starts, recorded for the failure-warning model."""
    return {"amount": parameters["amount"]}


@forewarn.flow(name="process-order", features=order_features)
def process_order(
    order_id: str = "A-1",
    amount: float = 42.0,
    seed: int = 0,
    transient_rate: float = 0.1,
    permanent_rate: float = 0.01,
    latency_seconds: float = 0.0,
) -> dict[str, str]:
    """Process one order end to end; fault parameters drive the seeded fault injector."""
    services = _services(seed, transient_rate, permanent_rate, latency_seconds)
    with transaction():  # the saga: a failure in here undoes the steps that succeeded, latest first
        order = validate_order(services, order_id, amount)
        reservation = reserve_inventory(services, order)
        charge = charge_payment(services, order)
        tracking = arrange_shipping(services, order, reservation)
    notice = notify_customer(services, order, tracking)
    return {"reservation": reservation, "charge": charge, "tracking": tracking, "notice": notice}


if __name__ == "__main__":
    print(process_order())
