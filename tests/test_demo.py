"""The demo: minutes of real animal sound of several species, embedded by a real worker,
with its labeled example imported once the windows exist, and every source credited."""

from __future__ import annotations

import pytest

from annotations import demo
from annotations.demo import (
    CREDITS,
    DEMO_PROJECT,
    LABELED_SOUNDSCAPES,
    LATITUDE,
    LONGITUDE,
    SITE,
    TIME_ZONE,
    load_demo,
)
from annotations.models import Annotation, ImportStatus, LabelImport, Recording, RecordingStatus
from annotations.species_range import RangeCheck
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_the_demo_holds_minutes_of_several_species_and_a_labeled_example(
    celery_worker_process, settings, tmp_path, client
):
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path]
    project = load_demo()
    assert load_demo() == project  # once
    assert [label.name for label in project.labels.all()] == ["great tit", "Bengalese finch", "storm-petrel"]
    recordings = Recording.objects.filter(deployment__project=project)
    assert recordings.count() == 9
    pending = [RecordingStatus.QUEUED, RecordingStatus.EMBEDDING]
    wait_for(lambda: not recordings.filter(status__in=pending).exists(), timeout=600, what="the demo's ingest")
    assert not recordings.filter(status=RecordingStatus.FAILED).exists()
    assert sum(r.duration_s for r in recordings) > 6 * 60

    example = wait_for(
        lambda: LabelImport.objects.filter(project=project, status=ImportStatus.DONE).first(),
        timeout=60,
        what="the labeled example's import",
    )
    assert example.unmatched_files == [] and example.unmatched_selections == 0
    labeled = Annotation.objects.filter(window__recording__deployment__project=project)
    counts = {
        (label, value): labeled.filter(label__name=label, value=value).count()
        for label in ("great tit", "Bengalese finch", "storm-petrel")
        for value in ("positive", "negative")
    }
    assert counts[("great tit", "positive")] >= 7 * LABELED_SOUNDSCAPES  # every placed song's window(s)
    assert counts[("great tit", "negative")] >= 10 * LABELED_SOUNDSCAPES
    assert counts[("Bengalese finch", "positive")] >= 2 * LABELED_SOUNDSCAPES
    assert counts[("storm-petrel", "positive")] >= 3
    # No window is both a great tit and not one.
    great_tit = labeled.filter(label__name="great tit")
    assert great_tit.values("window").distinct().count() == great_tit.count()
    labeled_files = set(labeled.values_list("window__recording__filename", flat=True))
    assert labeled_files == {"20240415_050000.wav", "20240415_051000.wav", "XC46092.wav"}

    # The site is placed: BirdNET's range model (run by the worker) says what can sing there.
    deployment = project.deployments.get()
    assert (deployment.site, deployment.latitude, deployment.longitude) == (SITE, LATITUDE, LONGITUDE)
    dawn = recordings.get(filename="20240415_050000.wav").started_at

    def in_range(species: str) -> bool | None:
        return RangeCheck().in_range(species, LATITUDE, LONGITUDE, dawn, TIME_ZONE)

    assert wait_for(lambda: in_range("Parus major_Great Tit"), timeout=120, what="the species range table")
    assert in_range("Cinclus mexicanus_American Dipper") is False
    assert in_range("Horornis diphone_Japanese Bush Warbler") is False

    client.force_login(project.created_by)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert DEMO_PROJECT in page
    for credit in CREDITS:
        assert credit.licence in page and credit.source.split(" (")[0] in page


def test_without_debian_packages_the_demo_lies_on_generated_noise_and_says_so(settings, tmp_path, monkeypatch):
    def no_apt(*args):
        raise FileNotFoundError("apt-get")

    monkeypatch.setattr(demo, "deb_members", no_apt)
    audio = demo.build_demo_audio(tmp_path / "demo", settings.VAR_DIR / "cache")
    assert not audio.real_ambience
    assert len(list((tmp_path / "demo").glob("*.wav"))) == 9
    text = demo.description(audio.real_ambience)
    assert "flare-game" not in text and "generated noise" in text
    assert "flare-game" in demo.description(True)
