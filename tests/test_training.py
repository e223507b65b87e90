"""Training through the database: few long recordings, only positives, refusals up front."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from django.test import Client

from annotations import scoring, training
from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.errors import InputError
from annotations.models import (
    Annotation,
    Classifier,
    ClassifierExample,
    Deployment,
    EvaluationSource,
    ProbeType,
    Recording,
    RecordingStatus,
    TaskStatus,
    Window,
)
from annotations.probes import GAP_S, MIN_HELD_OUT

pytestmark = pytest.mark.django_db

WINDOWS_PER_RECORDING = 1200  # an hour of 3 s windows


@pytest.fixture
def long_recordings(make_user):
    """Four one-hour recordings of synthetic windows; a call lies along one direction.

    Returns (user, project, label, window ids [4, 1200], is_call bool [4, 1200]).
    """
    rng = np.random.default_rng(0)
    user = make_user("trainer")
    project = create_project(user, "Long files", labels=["call"])
    deployment = create_deployment(project, "D")
    model = register_embedding_model("test-3s", "1", 16, 3.0, 3.0, 48_000)
    call = rng.random((4, WINDOWS_PER_RECORDING)) < 0.1
    ids = []
    for r in range(4):
        recording = Recording.objects.create(
            deployment=deployment, path=f"/long/r{r}.wav", filename=f"r{r}.wav", status=RecordingStatus.DONE
        )
        vectors = rng.standard_normal((WINDOWS_PER_RECORDING, 16)).astype(np.float32) + 3
        vectors[call[r], 0] += 4
        starts = np.arange(WINDOWS_PER_RECORDING) * 3.0
        replace_windows(recording.pk, model, starts, starts + 3, vectors)
        ids.append(list(recording.windows.order_by("start_s").values_list("id", flat=True)))
    return user, project, project.labels.get(), np.array(ids), call


def label(user, label, window_ids, positive: bool) -> None:
    Annotation.objects.bulk_create(
        Annotation(window_id=int(w), label=label, annotator=user, value="positive" if positive else "negative")
        for w in window_ids
    )


def trained(project, user, label, **options) -> Classifier:
    classifier = training.request_training(project, user, [label.pk], **options)
    training.train(classifier)
    classifier.refresh_from_db()
    return classifier


def test_28_labels_in_4_long_recordings_are_measured_with_no_neighbour_of_a_held_out_window_trained_on(
    long_recordings,
):
    user, project, call_label, ids, call = long_recordings
    rng = np.random.default_rng(1)
    # Seven labels per recording across the hour: four calls, three windows without.
    for r in range(4):
        label(user, call_label, rng.choice(ids[r, call[r]], 4, replace=False), True)
        label(user, call_label, rng.choice(ids[r, ~call[r]], 3, replace=False), False)
    # Before training: 16 positives and 12 negatives over many blocks; four folds of ten each need more.
    needed = training.labels_needed_by_label(project)[call_label.pk]
    assert (needed.positives, needed.negatives, needed.blocks) == (4 * MIN_HELD_OUT - 16, 4 * MIN_HELD_OUT - 12, 0)
    classifier = trained(project, user, call_label)
    output = classifier.outputs.get()
    assert output.eval_positives > 0 and output.eval_negatives > 0
    assert output.roc_auc is not None
    spread = scoring.cross_validated(output)
    assert spread is not None and spread.folds >= 2 and 0 <= spread.roc_auc_std <= 0.5

    page = Client()
    page.force_login(user)
    assert "more positives" in page.get(f"/projects/{project.pk}/").content.decode()
    html = page.get(f"/projects/{project.pk}/classifiers/{classifier.pk}/").content.decode()
    assert "fold CV" in html
    # Trained and not yet scored: the page says scoring is queued and keeps refreshing.
    assert classifier.scoring_status == TaskStatus.QUEUED and '<meta http-equiv="refresh"' in html

    examples = ClassifierExample.objects.filter(classifier=classifier).select_related("window")
    for recording in {e.window.recording_id for e in examples}:
        held = [e.window.start_s for e in examples if e.window.recording_id == recording and e.held_out]
        trained_on = [e.window.start_s for e in examples if e.window.recording_id == recording and not e.held_out]
        if held and trained_on:
            assert np.abs(np.subtract.outer(trained_on, held)).min() > GAP_S


@pytest.mark.parametrize("probe_type", [ProbeType.LINEAR, ProbeType.PROTOTYPE])
def test_only_positives_train_every_time_against_weak_negatives(long_recordings, probe_type):
    user, project, call_label, ids, call = long_recordings
    calls = ids[call]
    rng = np.random.default_rng(2)
    order = rng.permutation(len(calls))
    labeled = 0
    for _ in range(20):
        label(user, call_label, calls[order[labeled : labeled + 4]], True)
        labeled += 4
        classifier = trained(project, user, call_label, probe_type=probe_type, weak_negatives=300)
        assert classifier.status == "done", classifier.error
        output = classifier.outputs.get()
        assert output.train_positives > 0 and output.train_negatives == 0 and output.weak_negatives_used > 0


def test_weak_negatives_are_drawn_uniformly_without_replacement_and_repeatably(long_recordings):
    user, project, _, ids, _ = long_recordings
    model = Recording.objects.filter(deployment__project=project).first().embedding_model
    elsewhere = create_deployment(create_project(user, "Other"), "E")  # its windows are never drawn
    recording = Recording.objects.create(deployment=elsewhere, path="/other.wav", filename="other.wav")
    replace_windows(recording.pk, model, np.arange(10.0), np.arange(10.0) + 3, np.ones((10, 16), np.float32))

    def draw(seed: int, count: int, exclude: set[int]) -> list[int]:
        classifier = SimpleNamespace(project_id=project.pk, embedding_model_id=model.pk, random_seed=seed)
        return training._random_unlabeled_windows(classifier, count, exclude)

    excluded = set(ids[0, :600].tolist())
    drawn = draw(1, 400, excluded)
    assert len(drawn) == len(set(drawn)) == 400
    assert set(drawn) <= set(ids.ravel().tolist()) - excluded  # this project's, none excluded
    assert draw(1, 400, excluded) == drawn and draw(2, 400, excluded) != drawn
    per_recording = np.array([np.isin(row, drawn).sum() for row in ids])
    # Uniform over the 4,200 windows left: about 57 from the half-excluded recording, 114 from each other.
    assert 30 <= per_recording[0] <= 90 and all(80 <= n <= 150 for n in per_recording[1:]), per_recording
    assert sorted(draw(3, 10_000, excluded)) == sorted(set(ids.ravel().tolist()) - excluded)  # all there are


def test_untrainable_label_sets_are_refused_before_a_version_is_taken(long_recordings):
    user, project, call_label, ids, call = long_recordings
    with pytest.raises(InputError, match="no labeled windows"):
        training.request_training(project, user, [call_label.pk])
    label(user, call_label, ids[0, ~call[0]][:5], False)
    with pytest.raises(InputError, match="no positive windows"):
        training.request_training(project, user, [call_label.pk], weak_negatives=100)
    Annotation.objects.all().delete()
    label(user, call_label, ids[0, call[0]][:5], True)
    with pytest.raises(InputError, match="no negative windows"):
        training.request_training(project, user, [call_label.pk], weak_negatives=0)
    assert not Classifier.objects.filter(project=project).exists()
    # Left to the labels, weak negatives are drawn: positives alone train.
    assert training.request_training(project, user, [call_label.pk]).version == 1


def test_exclusive_labels_make_one_labels_positives_the_others_negatives(long_recordings):
    user, project, call_label, ids, call = long_recordings
    other = project.labels.create(name="other call", shortcut="o")
    label(user, call_label, ids[0, call[0]][:20], True)
    label(user, other, ids[1, ~call[1]][:20], True)
    label(user, other, ids[0, call[0]][:1], False)  # what people said stays
    with pytest.raises(InputError, match="no negative windows"):
        training.request_training(project, user, [call_label.pk, other.pk], weak_negatives=0)
    project.exclusive_labels = True
    project.save()
    classifier = training.request_training(project, user, [call_label.pk, other.pk], weak_negatives=0)
    targets = training.consensus_targets(classifier)
    assert targets[(int(ids[1, ~call[1]][0]), call_label.pk)] is False  # implied by "other call"
    assert targets[(int(ids[0, call[0]][1]), other.pk)] is False
    assert targets[(int(ids[0, call[0]][0]), call_label.pk)] is True
    assert sum(not positive for positive in targets.values()) == 40
    training.train(classifier)
    classifier.refresh_from_db()
    assert classifier.status == "done", classifier.error


def test_exclusive_targets_never_override_what_people_said():
    targets = {(1, 10): True, (1, 20): True, (2, 20): True, (3, 10): False}
    widened = training.exclusive_targets(targets, [10, 20, 30])
    assert widened[(1, 10)] is True and widened[(1, 20)] is True  # both said: both kept
    assert widened[(2, 10)] is False and widened[(2, 30)] is False and widened[(1, 30)] is False
    assert widened[(3, 10)] is False and (3, 20) not in widened


def test_a_held_out_deployment_measures_every_version_and_never_trains(long_recordings):
    user, project, call_label, ids, call = long_recordings
    held = create_deployment(project, "Evaluation", held_out=True)
    evaluation = Recording.objects.get(filename="r3.wav")
    Recording.objects.filter(pk=evaluation.pk).update(deployment=held)
    Window.objects.filter(recording=evaluation).update(deployment=held)
    label(user, call_label, ids[3, call[3]][:10], True)
    label(user, call_label, ids[3, ~call[3]][:30], False)
    with pytest.raises(InputError, match="no positive windows"):  # its labels never train
        training.request_training(project, user, [call_label.pk])
    label(user, call_label, ids[0, call[0]][:15], True)

    versions = [trained(project, user, call_label, probe_type=probe) for probe in ProbeType.values]
    evaluated = set(ids[3, call[3]][:10]) | set(ids[3, ~call[3]][:30])
    for classifier in versions:
        output = classifier.outputs.get()
        assert output.evaluated_on == EvaluationSource.HELD_OUT_DEPLOYMENTS
        assert (output.eval_positives, output.eval_negatives) == (10, 30) and output.roc_auc > 0.9
        assert output.train_negatives == 0 and output.weak_negatives_used > 0  # positives alone train
        examples = ClassifierExample.objects.filter(classifier=classifier)
        assert set(examples.filter(held_out=True).values_list("window_id", flat=True)) == evaluated
        assert not set(examples.filter(held_out=False).values_list("window_id", flat=True)) & set(ids[3])
    # Both versions measured on the same windows, in the same order: they compare exactly.
    first, second = (scoring.held_out_arrays(v.outputs.get())[0] for v in versions)
    assert np.array_equal(first, second)
    page = Client()
    page.force_login(user)
    html = page.get(f"/projects/{project.pk}/classifiers/{versions[1].pk}/").content.decode()
    assert "Measured on the held-out deployments&#x27; labels: 10 positive and 30 negative labeled windows" in html
    assert "(other windows)" not in html
    # Each figure with the interval 40 windows allow, in the page and in the API.
    interval = scoring.held_out_interval(versions[1].outputs.get())
    assert f"({interval.roc_auc_low:.2f}–{interval.roc_auc_high:.2f})" in html
    api = page.get(f"/api/projects/{project.pk}/classifiers/{versions[1].pk}/").json()["outputs"][0]
    assert api["held_out_interval"]["roc_auc"] == [interval.roc_auc_low, interval.roc_auc_high]
    assert interval.roc_auc_low <= api["roc_auc"] <= interval.roc_auc_high
    assert html.count('r="4" fill="#2f6b4f" stroke="#2f6b4f"') == 2  # the learning curve, both comparable

    # Without the held-out deployment, each version holds out its own time blocks: the
    # page no longer claims the two compare.
    Deployment.objects.filter(pk=held.pk).update(held_out=False)
    label(user, call_label, ids[0, call[0]][15:40], True)
    label(user, call_label, ids[0, ~call[0]][:60], False)
    third, fourth = (trained(project, user, call_label) for _ in range(2))
    assert third.outputs.get().evaluated_on == EvaluationSource.TIME_BLOCKS
    assert "(other windows)" in page.get(f"/projects/{project.pk}/classifiers/{fourth.pk}/").content.decode()
