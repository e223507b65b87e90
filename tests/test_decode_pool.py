"""The decode pool: several recordings decoded at once into one model's batches give
exactly the windows of one-file-at-a-time ingest, and a bad file fails alone."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import soxr

from annotations.audio import AudioError, iter_resampled_blocks
from annotations.deployments import create_deployment, create_project
from annotations.models import Recording, RecordingStatus, Window
from tests.audio_corpus import brown_noise
from workers import ingest
from workers.decode_pool import DecodePool
from workers.embedding_models import configured_model

pytestmark = pytest.mark.django_db(transaction=True)

# Rates and lengths that leave partial last windows and, at batch 8, batches that hold
# the end of one file and the start of the next.
FILES = [(22_050, 10.0), (44_100, 31.3), (48_000, 7.0), (44_100, 2.2), (48_000, 19.9), (22_050, 25.1)]
BATCH = 8


@pytest.fixture(scope="module")
def pool():
    pool = DecodePool(2)
    yield pool
    pool.close()


@pytest.fixture
def model():
    return configured_model()


def write_files(folder, birdsong, files) -> list:
    samples, rate = birdsong
    rng = np.random.default_rng(3)
    paths = []
    for i, (file_rate, seconds) in enumerate(files):
        audio = brown_noise(seconds, rate, rng)
        audio[: len(samples)] += samples[: len(audio)]
        path = folder / f"rec{i:02d}.wav"
        soundfile.write(str(path), soxr.resample(audio, rate, file_rate), file_rate)
        paths.append(path)
    return paths


def deployment_with(make_user, paths):
    deployment = create_deployment(create_project(make_user("admin"), "Pool"), "D")
    for path in paths:
        Recording.objects.create(deployment=deployment, path=str(path), filename=path.name)
    return deployment


def stored(recording) -> tuple[np.ndarray, np.ndarray, list]:
    windows = Window.objects.filter(recording=recording).order_by("start_s")
    starts, ends, classes = zip(*windows.values_list("start_s", "end_s", "top_classes"), strict=True)
    return np.array(starts), np.array(ends), list(classes)


def test_pooled_ingest_gives_the_windows_of_one_file_at_a_time(tmp_path, birdsong, make_user, model, pool):
    paths = write_files(tmp_path, birdsong, FILES)
    deployment = deployment_with(make_user, paths)
    recordings = list(deployment.recordings.order_by("pk"))
    # One task claims the rest: every file goes through the pool, in batches across files.
    assert ingest.ingest_recording(recordings[0].pk, model, BATCH, pool) == RecordingStatus.DONE
    for recording, path in zip(recordings, paths, strict=True):
        recording.refresh_from_db()
        assert recording.status == RecordingStatus.DONE, recording.error
        assert recording.attempts == 1
        alone = ingest.embed_file(path, model, BATCH)
        starts, ends, classes = stored(recording)
        np.testing.assert_array_equal(starts, alone.starts_s)
        np.testing.assert_array_equal(ends, alone.ends_s)
        assert recording.windows_done == recording.windows_expected == len(alone.starts_s)
        # The model's outputs do not depend on a window's neighbours in the batch.
        assert classes == alone.outputs.top_classes.tolist()
    # Later messages for the claimed recordings are duplicates.
    assert ingest.ingest_recording(recordings[-1].pk, model, BATCH, pool) == RecordingStatus.DONE
    assert Recording.objects.filter(deployment=deployment, attempts=1).count() == len(FILES)


class CountingModel:
    """The model, counting the windows it is given."""

    def __init__(self, model):
        self.spec, self.class_names, self._model, self.windows = model.spec, model.class_names, model, 0

    def embed_windows(self, windows):
        self.windows += len(windows)
        return self._model.embed_windows(windows)


def test_a_corrupt_file_amid_a_batch_fails_alone_and_its_batch_mates_are_stored(
    tmp_path, birdsong, make_user, model, pool
):
    good = write_files(tmp_path, birdsong, [(48_000, 40.0), (48_000, 40.0)])
    # A FLAC whose last sixth is garbage: it decodes for 500 s, further than the bounded
    # queue lets a decoder run ahead of the model, so its windows join batches with the
    # others' before it fails.
    bad = tmp_path / "broken.flac"
    noise = 0.05 * np.random.default_rng(4).standard_normal(600 * 44_100).astype(np.float32)
    soundfile.write(str(bad), noise, 44_100, format="FLAC")
    data = bad.read_bytes()
    bad.write_bytes(data[: 5 * len(data) // 6] + bytes(len(data) // 6))
    deployment = deployment_with(make_user, [good[0], bad, good[1]])
    first, middle, last = deployment.recordings.order_by("pk")
    counting = CountingModel(model)
    ingest.ingest_recording(first.pk, counting, BATCH, pool)
    for recording in (first, middle, last):
        recording.refresh_from_db()
    assert middle.status == RecordingStatus.FAILED
    with pytest.raises(AudioError, match="decoding failed at") as alone:
        for _ in iter_resampled_blocks(bad, model.spec.sample_rate):
            pass
    assert middle.error == str(alone.value)  # the reason it gives decoded on its own
    assert not Window.objects.filter(recording=middle).exists()
    for recording in (first, last):
        assert recording.status == RecordingStatus.DONE, recording.error
        assert Window.objects.filter(recording=recording).count() == 14  # 40 s in 3 s windows
    assert counting.windows > 2 * 14  # the broken file's first windows were embedded beside them
