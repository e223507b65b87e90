"""Celery tasks: thin wrappers that load what they need and call the domain functions.

Every task is ``acks_late``: a message is acknowledged only after the work is stored,
so a worker killed mid-task leaves the message for another worker, and the domain
functions make doing the work twice harmless. A lost database or Redis connection is
retried with exponential backoff; bad input (a broken audio file) is a recorded failure.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from celery import shared_task
from celery.signals import worker_process_init, worker_ready
from django.conf import settings
from django.db import connections

from annotations import embedding_map, hoplite_exchange, label_import, search_index, stored_scores
from annotations.errors import InputError
from annotations.models import Classifier, EmbeddingModel, HopliteExport, InferenceRun, Project, TaskStatus
from annotations.training import train
from workers import ingest
from workers.embedding_models import configured_model
from workers.inference import run_inference as score_deployment
from workers.ingest import TRANSIENT_ERRORS
from workers.species_range import store_range_table

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def failure_recorded(what: str, record: Callable[[str], object]) -> Iterator[None]:
    """Around a task's work: a lost connection is raised for Celery to retry; any other
    error is logged, recorded on the task's row by ``record(repr(error))`` so that the
    page says it failed, and raised."""
    try:
        yield
    except TRANSIENT_ERRORS:
        raise
    except Exception as error:
        logger.exception("%s failed", what)
        record(repr(error))
        raise


# Options of every task: a worker that dies mid-task leaves its message for another, and
# a service that is briefly away is tried again 5 times, after random waits of up to
# 5 s, 10 s, 20 s ... (at most 5 min).
TASK_OPTIONS = {
    "acks_late": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


@worker_process_init.connect
def _warm_up_model(**_) -> None:
    """Load the model (TensorFlow import, weights) and start the decoders once per worker
    process, at start."""
    configured_model()
    ingest.decode_pool()


@worker_ready.connect
def _pick_up_stalled_work(**_) -> None:
    """Resume what a crashed worker left unfinished (see ingest.requeue_stalled)."""
    requeued = ingest.requeue_stalled()
    indexes = search_index.request_wanted_builds()
    # This is the pool's parent: children forked later must not share its connection.
    connections.close_all()
    if requeued:
        logger.info("requeued %d stalled recordings", requeued)
    if indexes:
        logger.info("queued %d search index builds", indexes)


@shared_task(**TASK_OPTIONS, time_limit=6 * 3600)
def ingest_recording(recording_id: int) -> str:
    return ingest.ingest_recording(recording_id, configured_model(), settings.PERCH_AGILE_EMBED_BATCH)


@shared_task(**TASK_OPTIONS, time_limit=600)
def embed_clip_query(clip_query_id: int) -> str:
    return ingest.embed_clip_query(clip_query_id, configured_model())


@shared_task(**TASK_OPTIONS, time_limit=3600)
def train_classifier(classifier_id: int) -> str:
    classifier = Classifier.objects.get(pk=classifier_id)
    Classifier.objects.filter(pk=classifier_id).update(status=TaskStatus.RUNNING)
    try:
        train(classifier)
    except ValueError as error:
        Classifier.objects.filter(pk=classifier_id).update(status=TaskStatus.FAILED, error=str(error))
        return TaskStatus.FAILED
    stored_scores.request_scoring(classifier)
    return TaskStatus.DONE


@shared_task(**TASK_OPTIONS, time_limit=6 * 3600)
def score_project(classifier_id: int) -> str:
    classifier = Classifier.objects.select_related("embedding_model", "project").get(pk=classifier_id)
    failed = Classifier.objects.filter(pk=classifier_id)
    with failure_recorded(
        f"scoring by classifier {classifier_id}", lambda _: failed.update(scoring_status=TaskStatus.FAILED)
    ):
        stored_scores.score_project(classifier)
    return TaskStatus.DONE


@shared_task(**TASK_OPTIONS, time_limit=int(search_index.BUILD_TIME_LIMIT.total_seconds()))
def build_search_index(project_id: int, model_id: int) -> str:
    project, model = Project.objects.get(pk=project_id), EmbeddingModel.objects.get(pk=model_id)
    with failure_recorded(
        f"search index build for project {project_id}", lambda why: search_index.record_failure(project, model, why)
    ):
        search_index.build_search_index(project, model)
    return TaskStatus.DONE


@shared_task(**TASK_OPTIONS, time_limit=int(embedding_map.BUILD_TIME_LIMIT.total_seconds()))
def build_embedding_map(map_id: int) -> str:
    with failure_recorded(f"embedding map {map_id}", lambda why: embedding_map.record_failure(map_id, why)):
        embedding_map.build_embedding_map(map_id)
    return TaskStatus.DONE


@shared_task(**TASK_OPTIONS, time_limit=3600)
def import_labels(import_id: int) -> str:
    with failure_recorded(f"label import {import_id}", lambda why: label_import.fail(import_id, why)):
        label_import.run_queued_import(import_id)
    return TaskStatus.DONE


@shared_task(**TASK_OPTIONS, time_limit=6 * 3600)
def run_inference(run_id: int) -> str:
    run = InferenceRun.objects.select_related("classifier__embedding_model").get(pk=run_id)
    failed = InferenceRun.objects.filter(pk=run_id)
    with failure_recorded(f"inference run {run_id}", lambda why: failed.update(status=TaskStatus.FAILED, error=why)):
        score_deployment(run)
    return TaskStatus.DONE


@shared_task(**TASK_OPTIONS, time_limit=12 * 3600)
def import_hoplite(import_id: int) -> str:
    try:
        hoplite_exchange.run_import(import_id)
    except TRANSIENT_ERRORS:
        raise
    except InputError as error:  # the database itself is wrong: no retry will help
        hoplite_exchange.fail_import(import_id, str(error), refused=True)
        return TaskStatus.FAILED
    except Exception as error:
        logger.exception("hoplite import %s failed", import_id)
        hoplite_exchange.fail_import(import_id, repr(error))
        raise
    return TaskStatus.DONE


@shared_task(**TASK_OPTIONS, time_limit=12 * 3600)
def export_hoplite(export_id: int) -> str:
    failed = HopliteExport.objects.filter(pk=export_id)
    with failure_recorded(
        f"hoplite export {export_id}", lambda why: failed.update(status=TaskStatus.FAILED, error=why)
    ):
        hoplite_exchange.run_export(export_id)
    return TaskStatus.DONE


@shared_task(**TASK_OPTIONS, time_limit=600)
def species_range(latitude: float, longitude: float) -> str:
    return store_range_table(latitude, longitude)
