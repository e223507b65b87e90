"""The labeling loop learns from what it asks, on real sound through the REST API: the
smaller form of bench/learning_loop.py, on the real database, broker, worker and model.

A common species (great tit song in 15% of the windows): after a first page of hits, all
songs, the suggested queue must bring negatives; weak negatives must mostly be what they
claim; every version is measured on the held-out deployment B (another bird), and the
loop must not get worse as labels come.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from annotations.deployments import grant_folder
from annotations.models import ClassifierExample, Project, WindowScore
from tests.loop_corpus import COMMON, example_clip, load_loop_sources, make_deployment, write_recordings
from tests.scripted_annotator import create_loop_project, run_loop

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PAGE, PAGES = 12, 4


def test_the_suggested_queue_brings_negatives_and_the_loop_does_not_unlearn(
    celery_worker_process, media_root, settings, tmp_path, make_user, client_for
):
    sources = load_loop_sources(settings.VAR_DIR / "cache")
    recordings = {
        side: make_deployment(sources, i, recordings=4, windows_per_recording=60) for i, side in enumerate("AB")
    }
    folders = {side: tmp_path / "audio" / side for side in recordings}
    for side, folder in folders.items():
        write_recordings(recordings[side], folder)
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path / "audio"]
    client = client_for(make_user("ecologist"))
    loop = create_loop_project(
        client,
        "Loop",
        [(COMMON, COMMON)],
        folders,
        lambda project_id, folder: grant_folder(Project.objects.get(pk=project_id), str(folder)),
        recordings,
    )
    assert len(loop.windows_a) == len(loop.windows_b) == 240

    steps = run_loop(loop, COMMON, COMMON, "linear", example_clip(sources, COMMON, tmp_path / "clip.wav"), PAGE, PAGES)
    print("\n".join(map(str, steps)))
    # The clip search's page is songs; the suggestion then asks across the score range,
    # and that page holds negatives (the top or the margin would have brought songs).
    assert steps[0].positives >= PAGE - 2
    assert steps[1].queue == "bins" and steps[1].labels - steps[1].positives >= 3
    assert all(step.weak_negatives > 0 for step in steps)
    assert steps[-1].roc_auc >= 0.9, steps
    for before, after in zip(steps[1:], steps[2:], strict=False):
        assert after.roc_auc >= before.roc_auc - 0.05, steps

    # Measured on B, as the app says: its held-out ROC-AUC is that of the stored scores.
    classifier_id = ClassifierExample.objects.order_by("-classifier_id").values_list("classifier_id", flat=True)[0]
    scores = dict(
        WindowScore.objects.filter(classifier_id=classifier_id, window_id__in=loop.windows_b).values_list(
            "window_id", "score"
        )
    )
    truth = np.array([loop.truth[w] == COMMON for w in loop.windows_b])
    measured = roc_auc_score(truth, [scores[w] for w in loop.windows_b])
    assert measured == pytest.approx(steps[-1].roc_auc, abs=1e-4)

    # Weak negatives stay negatives: fewer songs among those trained on than in A at large,
    # and none of B's windows (held out) among them.
    weak = list(
        ClassifierExample.objects.filter(classifier_id=classifier_id, weak=True).values_list("window_id", flat=True)
    )
    assert weak and not set(weak) & set(loop.windows_b)
    songs_in_weak = np.mean([loop.truth[w] == COMMON for w in weak])
    songs_in_a = np.mean([loop.truth[w] == COMMON for w in loop.windows_a])
    assert songs_in_weak <= songs_in_a / 2, (songs_in_weak, songs_in_a)
