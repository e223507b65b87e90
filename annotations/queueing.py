"""Handing work to the Celery workers once the database has committed what they need.

Tasks are sent by name (``workers.tasks`` defines them): the domain never imports the
workers, which import the domain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from celery import chain
from django.db import transaction
from kombu.exceptions import OperationalError

from perch_agile.celery import app

# A short, bounded wait for the broker: a person is waiting on the answer.
RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}

INGEST_RECORDING = "workers.tasks.ingest_recording"
EMBED_CLIP_QUERY = "workers.tasks.embed_clip_query"
TRAIN_CLASSIFIER = "workers.tasks.train_classifier"
SCORE_PROJECT = "workers.tasks.score_project"
RUN_INFERENCE = "workers.tasks.run_inference"
BUILD_SEARCH_INDEX = "workers.tasks.build_search_index"
BUILD_EMBEDDING_MAP = "workers.tasks.build_embedding_map"
IMPORT_LABELS = "workers.tasks.import_labels"
IMPORT_HOPLITE = "workers.tasks.import_hoplite"
EXPORT_HOPLITE = "workers.tasks.export_hoplite"
SPECIES_RANGE = "workers.tasks.species_range"


class QueueUnavailable(Exception):
    """The broker (Redis) could not be reached; the API answers 503."""


def send_task(task_name: str, *args) -> None:
    """Send ``task_name(*args)`` now."""
    app.send_task(task_name, args=args, retry=True, retry_policy=RETRY_POLICY)


def enqueue_in_order_on_commit(steps: Sequence[tuple[str, int]]) -> None:
    """Send tasks (name, argument) that run one after another, each once the one before
    has finished, after the current transaction commits: a Celery chain, by name."""
    signatures = [app.signature(name, args=(argument,), immutable=True) for name, argument in steps]
    transaction.on_commit(lambda: chain(*signatures).apply_async(retry=True, retry_policy=RETRY_POLICY))


def enqueue_on_commit(task_name: str, *args, on_failure: Callable[[str], None] | None = None) -> None:
    """Send ``task_name(*args)`` after the current transaction commits.

    If the broker stays unreachable, ``on_failure`` records that in the database (so no
    row is left waiting for a task that was never sent) and QueueUnavailable is raised.
    """

    def send() -> None:
        try:
            send_task(task_name, *args)
        except OperationalError as error:
            message = "the task queue (Redis) could not be reached; try again in a moment"
            if on_failure is not None:
                on_failure(message)
            raise QueueUnavailable(message) from error

    transaction.on_commit(send)
