"""Search history entries say what was searched: examples' files and times, filters, the date."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.test import Client

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.models import ClipQuery, Combine, LabeledFilter, Recording, RecordingStatus, SearchRecord, Window
from annotations.search import search_history

pytestmark = pytest.mark.django_db


def test_history_entries_tell_examples_filters_and_date(make_user):
    user = make_user("annotator")
    project = create_project(user, "Kiwi", labels=["kiwi"])
    deployment = create_deployment(project, "Ridge", site="R1", timezone="Pacific/Auckland")
    model = register_embedding_model("test-model", "1", 4, 5.0, 5.0, 16_000)
    recording = Recording.objects.create(
        deployment=deployment,
        path="/audio/night.wav",
        filename="night.wav",
        status=RecordingStatus.DONE,
        duration_s=20,
        started_at=dt.datetime(2024, 1, 14, 18, 30, tzinfo=dt.UTC),
    )
    replace_windows(recording.pk, model, np.array([0.0, 5.0]), np.array([5.0, 10.0]), np.ones((2, 4), np.float32))
    first, second = Window.objects.filter(recording=recording).order_by("start_s")
    clip = ClipQuery.objects.create(
        project=project, created_by=user, path="/x", filename="call.wav", start_s=1, end_s=3
    )
    filtered = SearchRecord.objects.create(
        project=project,
        user=user,
        positive_windows=[second.pk],
        negative_windows=[first.pk],
        positive_clips=[clip.pk],
        combine=Combine.BEST,
        deployment=deployment,
        date_from=dt.date(2024, 1, 10),
        hour_from=22,
        hour_to=4,
        predicted_class="Apteryx",
        label=project.labels.get(),
        labeled=LabeledFilter.UNLABELED,
        one_per_recording=True,
        result_count=7,
    )
    SearchRecord.objects.filter(pk=filtered.pk).update(created_at=dt.datetime(2024, 2, 1, 9, 30, tzinfo=dt.UTC))
    plain = SearchRecord.objects.create(project=project, user=user, positive_windows=[first.pk])
    newest, older = search_history(project, user)
    assert newest.record == plain and newest.filters == []
    assert newest.examples == ["night.wav at 0 s (2024-01-15 07:30:00 NZDT)"]
    assert older.examples == [
        "night.wav at 5 s (2024-01-15 07:30:05 NZDT)",
        "clip call.wav, 1–3 s",
        "not night.wav at 0 s (2024-01-15 07:30:00 NZDT)",
    ]
    assert older.filters == [
        "best match of the examples",
        "deployment Ridge",
        "days 2024-01-10 to …",
        "22:00–04:00 local",
        "model hears 'Apteryx'",
        "not labeled kiwi",
        "best window per recording",
    ]
    browser = Client()
    browser.force_login(user)
    page = browser.get(f"/projects/{project.pk}/search/").content.decode()
    assert ">2024-02-01 09:30 UTC</time></a> · 7 hits" in page
    assert "night.wav at 5 s (2024-01-15 07:30:05 NZDT); clip call.wav, 1–3 s; not night.wav" in page
    assert "deployment Ridge · days 2024-01-10 to …" in page
