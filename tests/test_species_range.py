"""'Model hears' marks species that BirdNET's range model finds unlikely at the place and week."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.test import Client

from annotations import species_range
from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.models import EmbeddingModel, Recording, RecordingStatus, Window
from annotations.predictions import named_predictions
from workers.species_range import store_range_table

pytestmark = pytest.mark.django_db
CLASSES = [
    "Dryobates minor_Lesser Spotted Woodpecker",
    "Apus apus_Common Swift",
    "Turdus merula_Eurasian Blackbird",
    "Engine_Engine",
]
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def _window(deployment, model, started_at) -> Window:
    recording = Recording.objects.create(
        deployment=deployment,
        path=f"/audio/{deployment.name}-{started_at:%m}.wav",
        filename=f"{started_at:%m}.wav",
        status=RecordingStatus.DONE,
        duration_s=3,
        started_at=started_at,
    )
    replace_windows(
        recording.pk,
        model,
        np.array([0.0]),
        np.array([3.0]),
        np.ones((1, 4), np.float32),
        np.array([[0, 1, 2, 3]]),
        np.array([[0.2, 0.1, 0.0, -0.5]]),
    )
    return Window.objects.get(recording=recording)


def test_species_out_of_their_range_are_marked(make_user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.CACHES = LOCMEM
    user = make_user("owner")
    project = create_project(user, "Range", labels=["bird"])
    model = register_embedding_model("birdnet_v2_4", "test", 4, 3.0, 3.0, 48_000)
    EmbeddingModel.objects.filter(pk=model.pk).update(class_names=CLASSES)
    model.refresh_from_db()
    auckland = create_deployment(project, "Auckland", timezone="Pacific/Auckland", latitude=-36.85, longitude=174.76)
    berlin = create_deployment(project, "Berlin", timezone="Europe/Berlin", latitude=52.52, longitude=13.40)
    unplaced = create_deployment(project, "Unplaced")
    june = dt.datetime(2024, 6, 20, 5, tzinfo=dt.UTC)
    windows = [
        _window(auckland, model, june),
        _window(berlin, model, june),
        _window(berlin, model, dt.datetime(2024, 1, 10, 5, tzinfo=dt.UTC)),
        _window(unplaced, model, june),
    ]
    for latitude, longitude in ((-36.85, 174.76), (52.52, 13.40)):
        store_range_table(latitude, longitude)  # what the worker does when a page asks

    named = named_predictions(windows)
    verdicts = [[p.in_range for p in named[w.pk]] for w in windows]
    assert verdicts == [
        [False, False, True, None],  # no woodpecker nor swift in New Zealand; an engine is no species
        [True, True, True, None],  # both breed around Berlin in June
        [True, False, True, None],  # the swift winters in Africa
        [None, None, None, None],  # no coordinates: nothing to check against
    ]
    browser = Client()
    browser.force_login(user)
    page = browser.get(f"/projects/{project.pk}/search/?window={windows[1].pk}", follow=True).content.decode()
    assert "Model hears <small>(uncalibrated)</small>" in page
    # The other three windows are the hits: Auckland's woodpecker and swift, January's swift.
    assert page.count('class=" out-of-range"') == 3 and page.count("unlikely here</small>") == 3
    assert "Lesser Spotted Woodpecker (Dryobates minor) 55%" in page  # the raw score stays visible


def test_a_missing_range_table_is_asked_of_a_worker_once(make_user, settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = tmp_path
    settings.CACHES = LOCMEM
    sent = []
    monkeypatch.setattr(species_range, "send_task", lambda name, *args: sent.append((name, args)))
    check = species_range.RangeCheck()
    june = dt.datetime(2024, 6, 20, 5, tzinfo=dt.UTC)
    assert check.in_range(CLASSES[0], 52.52, 13.40, june, "Europe/Berlin") is None
    assert species_range.RangeCheck().in_range(CLASSES[1], 52.49, 13.44, june, "Europe/Berlin") is None
    assert sent == [("workers.tasks.species_range", (52.5, 13.4))]  # the same place, to a tenth of a degree
    assert species_range.week_48(dt.date(2024, 1, 1)) == 1 and species_range.week_48(dt.date(2023, 12, 31)) == 48
