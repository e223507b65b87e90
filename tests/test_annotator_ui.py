"""The annotator's search and labeling features on the real PostgreSQL + pgvector:
several examples, negatives, filters, history, spectrograms, bulk labels, shortcuts."""

from __future__ import annotations

import datetime as dt
import io
import os
import time

import numpy as np
import pytest
import soundfile
from django.core.management import call_command
from django.test import Client
from PIL import Image

from annotations.deployments import create_deployment, create_project, edit_start_time
from annotations.detection_rates import store_detection_counts
from annotations.detections import detections_per_site_and_day
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.errors import InputError
from annotations.labeling import clear_label, label_counts, set_label
from annotations.models import (
    Annotation,
    Classifier,
    Detection,
    InferenceRun,
    LabelChange,
    Recording,
    RecordingStatus,
    SearchRecord,
    Window,
)
from annotations.search import Examples, SearchFilters, SearchSpec, combined_scores, run_search
from annotations.vocabulary import add_label, update_label
from frontend.templatetags.predictions import class_label, probability

pytestmark = pytest.mark.django_db

DIM = 8


@pytest.fixture
def survey(make_user, tmp_path, birdsong):
    """Two deployments (sites A and B, different time zones), 3 recordings of real birdsong
    each, one window per second with planted embeddings: window i of every recording
    points along axis i % DIM, so the nearest windows of a query are known."""
    user = make_user("ann")
    project = create_project(user, "Survey", labels=["song", "call"])
    model = register_embedding_model("planted", "1", DIM, 1.0, 1.0, 32_000)
    model.class_names = ["Turdus merula_Eurasian Blackbird", "Parus major_Great Tit", "Engine_Engine"]
    model.save()
    samples, rate = birdsong
    windows = {}
    for site, zone in (("A", "UTC"), ("B", "Pacific/Auckland")):
        deployment = create_deployment(project, f"Deployment {site}", site=site)
        deployment.timezone = zone
        deployment.save()
        for index in range(3):
            path = tmp_path / f"{site}{index}.wav"
            soundfile.write(path, samples[: 8 * rate], rate)
            recording = Recording.objects.create(
                deployment=deployment,
                path=str(path),
                filename=path.name,
                status=RecordingStatus.DONE,
                duration_s=8.0,
                sample_rate=rate,
                started_at=dt.datetime(2024, 5, 20 + index, 5, 0, 0, tzinfo=dt.UTC),
            )
            starts = np.arange(8, dtype=np.float64)
            vectors = np.eye(DIM, dtype=np.float32)[np.arange(8) % DIM] + 0.05 * (index + 1)
            replace_windows(recording.pk, model, starts, starts + 1, vectors)
            for window in recording.windows.order_by("start_s"):
                windows[(site, index, int(window.start_s))] = window.pk
    # The model "hears" a blackbird in the first second of every recording.
    Window.objects.filter(start_s=0).update(top_classes=[0, 2], top_logits=[3.5, -1.0])
    client = Client()
    client.force_login(user)
    return project, model, windows, client, user


def ids(page):
    return [hit.window_id for hit in page.hits]


def test_mean_best_and_negative_examples_score_as_documented():
    positives = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    examples = Examples(
        model=None, positives=positives, negatives=np.array([[0, 1, 0]], np.float32), exclude_window_ids=()
    )
    candidates = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], np.float32)
    mean = combined_scores(candidates, dataclass_replace(examples, negatives=np.zeros((0, 3), np.float32)), "mean")
    np.testing.assert_allclose(mean, [np.sqrt(0.5), 1.0, 0.0], atol=1e-6)
    best = combined_scores(candidates, dataclass_replace(examples, negatives=np.zeros((0, 3), np.float32)), "best")
    np.testing.assert_allclose(best, [1.0, np.sqrt(0.5), 0.0], atol=1e-6)
    pushed = combined_scores(candidates, examples, "best")
    np.testing.assert_allclose(pushed, [1.0, np.sqrt(0.5) - 0.5 * np.sqrt(0.5), 0.0], atol=1e-6)


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_several_examples_and_negatives_change_the_results(survey):
    project, _, windows, _, _ = survey
    one = windows[("A", 0, 1)]
    single = run_search(project, SearchSpec(positive_windows=(one,)), k=10)
    assert {windows[(s, i, 1)] for s in "AB" for i in range(3)} - {one} <= set(ids(single)[:5])
    two = SearchSpec(positive_windows=(one, windows[("A", 0, 2)]), combine="best")
    best = run_search(project, two, k=10)
    top = set(ids(best)[:10])
    assert {windows[(s, i, 1)] for s in "AB" for i in range(3)} - {one} <= top
    assert {windows[(s, i, 2)] for s in "AB" for i in range(1, 3)} <= top
    # Windows along the same axis as a negative example sink below the others.
    pushed = run_search(project, SearchSpec(positive_windows=(one,), negative_windows=(windows[("B", 2, 1)],)), k=40)
    order = ids(pushed)
    assert windows[("B", 2, 1)] not in order  # examples never come back as hits
    worst_same_axis = max(
        order.index(windows[(s, i, 1)]) for s in "AB" for i in range(3) if (s, i) not in {("A", 0), ("B", 2)}
    )
    assert pushed.hits[worst_same_axis].score < single.hits[0].score - 0.4


def test_filters_narrow_the_hits(survey):
    project, _, windows, _, _ = survey
    deployment_b = project.deployments.get(site="B")
    query = windows[("A", 0, 1)]

    def hits(**filters):
        return run_search(project, SearchSpec(positive_windows=(query,), filters=SearchFilters(**filters)), k=100).hits

    assert {h.site for h in hits(deployment_id=deployment_b.pk)} == {"B"}
    best_each = hits(one_per_recording=True)
    assert len(best_each) == len({h.recording_id for h in best_each}) == 6
    assert {h.window_id for h in best_each} >= {windows[(s, i, 1)] for s in "AB" for i in range(3)} - {query}
    assert {h.site for h in hits(site="A")} == {"A"}
    # 05:00 UTC on May 21 is 17:00 on May 21 in Auckland (UTC+12): the same local day, hours apart.
    assert {h.filename for h in hits(date_from=dt.date(2024, 5, 21), date_to=dt.date(2024, 5, 21))} == {
        "A1.wav",
        "B1.wav",
    }
    assert {h.site for h in hits(hour_from=4, hour_to=6)} == {"A"}
    assert {h.site for h in hits(hour_from=16, hour_to=4)} == {"B"}  # wraps midnight
    heard = hits(predicted_class="blackbird")
    assert heard and {h.start_s for h in heard} == {0.0}
    assert [p[:2] for p in heard[0].predictions] == [("Turdus merula_Eurasian Blackbird", 3.5), ("Engine_Engine", -1.0)]
    with pytest.raises(InputError, match="no class"):
        hits(predicted_class="kiwi")
    song = project.labels.get(name="song")
    labeled = windows[("B", 1, 1)]
    Annotation.objects.create(window_id=labeled, label=song, annotator=project.created_by, value="positive")
    assert labeled not in {h.window_id for h in hits(label_id=song.pk, labeled="unlabeled")}
    assert [h.window_id for h in hits(label_id=song.pk, labeled="labeled")] == [labeled]
    assert hits(site="A")[0].started_at.tzinfo is not None


def test_the_search_page_saves_history_and_pages_results(survey):
    project, _, windows, client, user = survey
    url = f"/projects/{project.pk}/search/"
    response = client.get(url, {"window": windows[("A", 0, 1)], "negative": windows[("A", 0, 2)], "combine": "best"})
    assert response.status_code == 302 and "?history=" in response["Location"]
    record = SearchRecord.objects.get(user=user)
    assert record.positive_windows == [windows[("A", 0, 1)]] and record.negative_windows == [windows[("A", 0, 2)]]
    page = client.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="hit"') == 46  # 48 windows less the two examples
    assert 'id="keys-help"' in html and "spectrogram.png" in html
    client.get(response["Location"])  # a reload shows the same results without a new record
    assert SearchRecord.objects.count() == 1
    assert SearchRecord.objects.get().result_count == 46
    partial = client.get(response["Location"] + "&offset=40&partial=1").content.decode()
    assert partial.count('class="hit"') == 6 and "<html" not in partial
    # A window ingested later joins a search run again, not the one in the history.
    model = Window.objects.get(pk=windows[("A", 0, 1)]).model
    late = Recording.objects.create(deployment=project.deployments.first(), path="/late.wav", filename="late.wav")
    replace_windows(late.pk, model, np.zeros(1), np.ones(1), np.eye(DIM, dtype=np.float32)[1:2])
    assert f'data-window="{late.windows.get().pk}"' not in client.get(response["Location"]).content.decode()
    again = client.get(url, {"window": windows[("A", 0, 1)], "negative": windows[("A", 0, 2)], "combine": "best"})
    assert f'data-window="{late.windows.get().pk}"' in client.get(again["Location"]).content.decode()
    other = Client()
    other.force_login(type(user).objects.create_user("outsider", password="a-long-test-password"))
    assert other.get(response["Location"]).status_code == 404
    bad = client.get(url, {"window": "12abc"})
    assert bad.status_code == 200 and "whole number" in bad.content.decode()


def test_spectrograms_are_png_cached_and_confined_to_the_project(survey, settings, tmp_path):
    project, _, windows, client, _ = survey
    settings.MEDIA_ROOT = tmp_path / "media"
    url = f"/api/projects/{project.pk}/windows/{windows[('A', 0, 3)]}/spectrogram.png"
    response = client.get(url, {"scale": "linear", "context": "2"})
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(b"".join(response.streaming_content)))
    assert image.height == 128 and image.width == 34 + 5 * 50  # axis + 5 s (1 s window, 2 s either side)
    cached = list((tmp_path / "media" / "spectrograms").rglob("*.png"))
    assert len(cached) == 1
    before = cached[0].stat().st_mtime_ns
    assert client.get(url, {"scale": "linear", "context": "2"}).status_code == 200
    assert cached[0].stat().st_mtime_ns == before  # served from the cache, not rendered again
    old = time.time() - 40 * 86_400
    os.utime(cached[0], (old, old))
    output = io.StringIO()
    call_command("purge_spectrogram_cache", "--days", "30", stdout=output)
    assert output.getvalue().startswith("deleted 1 picture(s)") and not cached[0].exists()
    assert client.get(url, {"scale": "linear", "context": "2"}).status_code == 200 and cached[0].exists()
    assert client.get(url, {"scale": "bark"}).status_code == 400
    assert client.get(url, {"gain": "15"}).status_code == 400

    def brightness(**params) -> float:
        picture = Image.open(io.BytesIO(b"".join(client.get(url, params).streaming_content)))
        return float(np.asarray(picture.convert("L"))[:, 34:].mean())  # the spectrogram, not the axis

    assert brightness(gain="20") > brightness() + 10  # faint calls brightened, one scale for all
    recording = Recording.objects.get(filename="A0.wav")
    region = client.get(
        f"/api/projects/{project.pk}/recordings/{recording.pk}/spectrogram.png", {"start": 1, "end": 7}, follow=True
    )
    assert Image.open(io.BytesIO(b"".join(region.streaming_content))).width == 34 + 8 * 50  # its tile: all 8 s
    outsider = Client()
    outsider.force_login(type(project.created_by).objects.create_user("x", password="a-long-test-password"))
    assert outsider.get(url).status_code == 404


def test_bulk_labels_are_one_transaction_with_an_audit_trail(survey, client_for):
    project, _, windows, _, user = survey
    api = client_for(user)
    song = project.labels.get(name="song")
    targets = [windows[("A", 0, s)] for s in range(4)]
    Annotation.objects.create(window_id=targets[0], label=song, annotator=user, value="negative")
    changed_earlier = Annotation.objects.create(window_id=targets[1], label=song, annotator=user, value="unsure")
    Annotation.objects.filter(pk=changed_earlier.pk).update(updated_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    url = f"/api/projects/{project.pk}/annotations/bulk/"
    response = api.post(url, {"windows": targets, "label": song.pk, "value": "negative"}, format="json")
    assert response.status_code == 200 and response.json() == {"changed": 3}
    assert Annotation.objects.filter(label=song, value="negative").count() == 4
    assert LabelChange.objects.filter(label=song, new_value="negative").count() == 3
    assert Annotation.objects.get(pk=changed_earlier.pk).updated_at.year > 2024  # a changed label is newly updated
    foreign = create_project(user, "Elsewhere")
    other_window = Window.objects.filter(recording__deployment__project=project).exclude(pk__in=targets).first()
    response = api.post(
        f"/api/projects/{foreign.pk}/annotations/bulk/",
        {"windows": [other_window.pk], "label": song.pk, "value": "positive"},
        format="json",
    )
    assert response.status_code == 400  # neither the window nor the label is in that project
    assert not Annotation.objects.filter(window=other_window).exists()


def test_a_box_moved_in_frequency_alone_is_in_the_audit_trail_and_on_the_window_page(survey, client_for):
    project, _, windows, client, user = survey
    song = project.labels.get(name="song")
    window = windows[("A", 1, 2)]
    set_label(project, user, window, song.pk, "positive", band_hz=(2_000, 4_000))
    set_label(project, user, window, song.pk, "positive", band_hz=(3_000, 6_000))  # the value stays
    set_label(project, user, window, song.pk, "positive", band_hz=(3_000, 6_000))  # nothing changes
    clear_label(project, user, window, song.pk)
    changes = LabelChange.objects.filter(window_id=window).order_by("id")
    assert [(c.old_value, c.old_low_hz, c.old_high_hz, c.new_value, c.new_low_hz, c.new_high_hz) for c in changes] == [
        ("", None, None, "positive", 2_000, 4_000),
        ("positive", 2_000, 4_000, "positive", 3_000, 6_000),
        ("positive", 3_000, 6_000, "", None, None),
    ]
    page = client.get(f"/projects/{project.pk}/windows/{window}/").content.decode()
    assert "positive (2000–4000 Hz) → positive (3000–6000 Hz)" in page
    history = client_for(user).get(f"/api/projects/{project.pk}/windows/{window}/history/").json()
    assert history[1]["old_low_hz"] == 2_000 and history[1]["new_high_hz"] == 6_000


def test_label_shortcuts_are_unique_and_never_a_page_key(survey):
    project, *_ = survey
    assert sorted(project.labels.values_list("shortcut", flat=True)) == ["q", "w"]
    assert add_label(project, "drum").shortcut == "e"
    with pytest.raises(InputError, match="key of the labeling pages"):
        add_label(project, "hoot", shortcut="j")
    song = project.labels.get(name="song")
    with pytest.raises(InputError, match="already the shortcut"):
        update_label(song, shortcut="e")
    assert update_label(song, shortcut="Z").shortcut == "z"


def test_disagreements_show_on_the_review_page_and_an_admin_settles_them(survey, make_user, client_for):
    project, _, windows, client, admin = survey
    from annotations.membership import add_member

    colleague = make_user("colleague")
    add_member(project, colleague.username, "annotator")
    song = project.labels.get(name="song")
    disputed, agreed = windows[("A", 1, 4)], windows[("A", 1, 5)]
    for user, value in ((admin, "positive"), (colleague, "negative")):
        Annotation.objects.create(window_id=disputed, label=song, annotator=user, value=value)
        Annotation.objects.create(window_id=agreed, label=song, annotator=user, value="positive")
    counts = {label.name: (label.positives, label.negatives, label.unsure) for label in label_counts(project)}
    assert counts == {"song": (2, 1, 0), "call": (0, 0, 0)}  # windows, whoever labeled them
    url = f"/projects/{project.pk}/labels/{song.pk}/"
    everything = client.get(url).content.decode()
    assert everything.count('class="hit"') == 2
    disputes = client.get(url, {"conflicts": "1"}).content.decode()
    assert disputes.count('class="hit"') == 1 and f'data-window="{disputed}"' in disputes
    assert "Settle for everyone" in disputes
    by_colleague = client.get(url, {"annotator": "colleague", "value": "negative"}).content.decode()
    assert by_colleague.count('class="hit"') == 1
    resolve = f"/api/projects/{project.pk}/annotations/resolve/"
    body = {"window": disputed, "label": song.pk, "value": "positive"}
    assert client_for(colleague).post(resolve, body, format="json").status_code == 403  # annotators cannot
    assert client_for(admin).post(resolve, body, format="json").json() == {"removed": 1}
    assert list(Annotation.objects.filter(window_id=disputed).values_list("value", flat=True)) == ["positive"]
    removal = LabelChange.objects.get(window_id=disputed, new_value="")
    assert removal.annotator == admin and removal.old_value == "negative"
    assert client.get(url, {"conflicts": "1"}).content.decode().count('class="hit"') == 0


def test_a_recording_page_shows_its_span_and_windows_to_pick(survey):
    project, _, windows, client, _ = survey
    recording = Recording.objects.get(filename="B2.wav")
    html = client.get(f"/projects/{project.pk}/recordings/{recording.pk}/").content.decode()
    assert html.count('class="hit"') == 8 and "data-region-view" in html
    assert f"?window={windows[('B', 2, 0)]}" in html  # m / "Find similar" searches with the window
    assert client.get(f"/projects/{project.pk}/recordings/{recording.pk}/", {"start": "nan"}).status_code == 200


def test_detections_per_day_count_local_days(survey):
    project, model, windows, _, _ = survey
    late_evening_utc = dt.datetime(2024, 5, 20, 13, 0, tzinfo=dt.UTC)  # 01:00 on May 21 in Auckland
    edit_start_time(Recording.objects.get(filename="B0.wav"), late_evening_utc)
    classifier = Classifier.objects.create(project=project, version=1, embedding_model=model, status="done")
    run = InferenceRun.objects.create(classifier=classifier, deployment=project.deployments.get(site="B"))
    song = project.labels.get(name="song")
    Detection.objects.bulk_create(
        Detection(run=run, window_id=windows[("B", 0, second)], label=song, score=0.9) for second in (0, 1, 2)
    )
    store_detection_counts(run)
    assert detections_per_site_and_day(run) == [
        {"label": "song", "site": "B", "day": dt.date(2024, 5, 21), "detections": 3}
    ]


def test_predictions_read_as_common_names_and_percentages():
    assert class_label("Turdus merula_Eurasian Blackbird") == "Eurasian Blackbird (Turdus merula)"
    assert class_label("Engine") == "Engine"
    assert probability(0.0) == 0.5 and probability(3.5) == pytest.approx(0.9707, abs=1e-4)
    assert probability(-1000) == pytest.approx(0.0) and probability(1000) == pytest.approx(1.0)
