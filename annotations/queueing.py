"""Handing work to the Celery workers once the database has committed what they need."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from kombu.exceptions import OperationalError

# A short, bounded wait for the broker: a person is waiting on the answer.
RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


class QueueUnavailable(Exception):
    """The broker (Redis) could not be reached; the API answers 503."""


def enqueue_on_commit(task, *args, on_failure: Callable[[str], None] | None = None) -> None:
    """Send ``task(*args)`` after the current transaction commits.

    If the broker stays unreachable, ``on_failure`` records that in the database (so no
    row is left waiting for a task that was never sent) and QueueUnavailable is raised.
    """

    def send() -> None:
        try:
            task.apply_async(args=args, retry=True, retry_policy=RETRY_POLICY)
        except OperationalError as error:
            message = "the task queue (Redis) could not be reached; try again in a moment"
            if on_failure is not None:
                on_failure(message)
            raise QueueUnavailable(message) from error

    transaction.on_commit(send)
