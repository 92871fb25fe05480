"""Compensation (a saga) on Prefect transactions: undo a task that succeeded when its flow later fails.

``@forewarn.task(compensate=refund)`` does two things with Prefect 3's own machinery:

1. after the task's call succeeds, it stores what the undo needs (the result, the arguments, the ids) in
   the task run's transaction (``Transaction.set``);
2. it adds an ``on_rollback`` hook to the Prefect task, which calls ``refund(result, *args, **kwargs)``
   and records one attempt row with outcome ``compensated`` (or ``compensation_failure``).

Prefect rolls a task's transaction back when an enclosing transaction fails: put the steps of the saga in
``with prefect.transactions.transaction():`` inside the flow. An error in the block rolls back every task
that completed in it, the latest first (Prefect calls the children's rollbacks in reverse), then the flow
fails with the error. Without an enclosing transaction, each task commits when it ends and nothing is
ever undone: that is Prefect's semantics, not a forewarn choice.

An undo action that raises is recorded and logged, and the other undo actions still run (a raising
``on_rollback`` hook would stop Prefect's rollback of the tasks before it).

Example::

    from prefect.transactions import transaction

    def refund(charge_id, order):
        gateway.refund(charge_id)

    @forewarn.task(compensate=refund)
    def charge(order) -> str:
        return gateway.charge(order)

    @forewarn.flow
    def orders(order):
        with transaction():
            charge_id = charge(order)
            ship(order)              # raises: refund(charge_id, order) runs, then the flow fails
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect.transactions import Transaction, get_transaction

from forewarn.records import AttemptOutcome, AttemptRecord
from forewarn.redaction import Redactor

logger = logging.getLogger("forewarn.compensation")

_KEY = "forewarn.compensation"
"""The name under which a task run's transaction holds its :class:`PendingUndo`."""

Compensate = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class PendingUndo:
    """What one succeeded task run needs to be undone: its result and arguments, and where to record it."""

    result: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    task_run_id: str
    flow_run_id: str | None
    attempt: int
    """The attempt number the compensation row gets: one after the task run's last row."""
    execution_id: str = ""
    """The execution of the task run that succeeded: the compensation row belongs to it."""

    def __deepcopy__(self, memo: dict[int, Any]) -> PendingUndo:
        # Transaction.get deep-copies what it hands out; the undo must act on the very objects the task
        # used (a client holding a lock cannot even be copied), so it is handed out as it is.
        return self


def stage_undo(undo: PendingUndo) -> None:
    """Keep ``undo`` in the current task run's transaction, for its rollback hook (no transaction: nothing)."""
    txn = get_transaction()
    if txn is not None:
        txn.set(_KEY, undo)


def rollback_hook(
    task_name: str,
    compensate: Compensate,
    sink: Callable[[AttemptRecord], object],
    clock: Callable[[], datetime],
    redactor: Redactor | None = None,
) -> Callable[[Transaction], None]:
    """Prefect's ``on_rollback`` hook for a task with ``compensate``: run the undo and record it; never raise."""
    redactor = redactor or Redactor()

    def on_rollback(txn: Transaction) -> None:
        undo = txn.get(_KEY, None)
        if not isinstance(undo, PendingUndo):  # the task run failed, or did not get as far as staging
            return
        start = clock()
        error: Exception | None = None
        try:
            compensate(undo.result, *undo.args, **undo.kwargs)
        except Exception as exc:  # recorded; the other undo actions must still run
            error = exc
            logger.exception("compensation of task %r (run %s) failed", task_name, undo.task_run_id)
        sink(
            AttemptRecord(
                flow_run_id=undo.flow_run_id,
                task_run_id=undo.task_run_id,
                task_name=task_name,
                attempt=undo.attempt,
                start_time=start,
                end_time=clock(),
                outcome=AttemptOutcome.COMPENSATION_FAILURE if error else AttemptOutcome.COMPENSATED,
                exception_type=type(error).__name__ if error else None,
                exception_message=redactor.redact(str(error)) if error else None,
                execution_id=undo.execution_id,
            )
        )

    on_rollback.__name__ = f"compensate_{task_name}"
    return on_rollback


__all__ = ["PendingUndo", "rollback_hook", "stage_undo"]
