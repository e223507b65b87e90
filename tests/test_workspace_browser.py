"""The ecologist's workspace in a real browser: the grid of hits, pages that fit the
window, the zoomable recording view. Planted embeddings of real birdsong, so no worker.

Screenshots land in test-output/ for a person to look at.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import soundfile
from django.utils import timezone

from annotations.deployments import create_deployment, create_project, deployment_progress
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.labeling import set_label
from annotations.models import (
    Annotation,
    Classifier,
    ClassifierLabel,
    Deployment,
    Recording,
    RecordingStatus,
    TaskStatus,
    Window,
)
from tests.conftest import OUTPUT_DIR
from tests.test_browser import CHROMIUM, browser, log_in, page, wait_until  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (bash run.sh test installs it)"),
]

DIM = 8


@pytest.fixture
def planted(make_user, tmp_path, birdsong):
    """One deployment of four 10 s recordings of real birdsong, 5 s windows every second,
    embeddings planted so that every window is a hit of every other."""
    user = make_user("annotator")
    project = create_project(user, "Grid survey", labels=["bird", "insect"])
    model = register_embedding_model("planted", "1", DIM, 5.0, 1.0, 32_000)
    deployment = create_deployment(project, "Ridge", site="R1")
    samples, rate = birdsong
    rng = np.random.default_rng(0)
    for index in range(4):
        path = tmp_path / f"R1_2024052{index}_050000.wav"
        soundfile.write(path, samples, rate)
        recording = Recording.objects.create(
            deployment=deployment,
            path=str(path),
            filename=path.name,
            status=RecordingStatus.DONE,
            duration_s=len(samples) / rate,
            sample_rate=rate,
            started_at=dt.datetime(2024, 5, 20 + index, 5, 0, 0, tzinfo=dt.UTC),
        )
        starts = np.arange(6, dtype=np.float64)
        vectors = 1.0 + 0.1 * rng.standard_normal((6, DIM)).astype(np.float32)
        replace_windows(recording.pk, model, starts, starts + 5, vectors)
    OUTPUT_DIR.mkdir(exist_ok=True)
    return project, deployment, user


def test_label_a_three_by_four_block_of_the_grid_with_arrow_and_number_keys(page, planted):  # noqa: F811
    project, _, user = planted
    example = Window.objects.filter(recording__deployment__project=project).order_by("pk").first()
    page.set_viewport_size({"width": 1366, "height": 900})
    log_in(page, "annotator")
    page.wait_for_selector("h1:has-text('Projects')")
    # The planted windows overlap (5 s every second): every one of them, not one per sound.
    page.goto(f"/projects/{project.pk}/search/?window={example.pk}&all_overlapping=1")
    page.wait_for_selector(".hit.current")
    page.select_option("[data-hit-layout]", "grid")
    wait_until(page, "document.querySelector('ol.hits').classList.contains('grid')")
    columns = page.evaluate("columns()")
    assert columns >= 5  # sized to the screen: a list would be 1
    ids = [int(w) for w in page.locator(".hit").evaluate_all("hs => hs.map(h => h.dataset.window)")]
    assert len(ids) == 23 and len(ids) >= 3 * columns

    values = {"1": "positive", "2": "negative", "3": "unsure"}
    expected = {}
    for row in range(3):
        for column in range(4):
            key = "123"[(row + column) % 3]
            assert page.evaluate("hits().indexOf(document.activeElement)") == row * columns + column
            page.keyboard.press(key)
            hit = ids[row * columns + column]
            page.wait_for_selector(f".hit[data-window='{hit}'][data-labeled={values[key]}]")
            expected[hit] = values[key]
        # Focus is on the fifth tile of the row: down one row, then back to its first tile.
        page.keyboard.press("ArrowDown")
        for _ in range(4):
            page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")
    assert page.evaluate("hits().indexOf(document.activeElement)") == 2 * columns

    wait_until(page, "[...document.querySelectorAll('.hit img')].every((i) => i.complete && i.naturalWidth)")
    page.screenshot(path=OUTPUT_DIR / "grid.png", full_page=True)
    page.reload()
    page.wait_for_selector("ol.hits.grid .hit.current")  # the layout is remembered
    stored = dict(Annotation.objects.filter(annotator=user).values_list("window_id", "value"))
    assert stored == expected
    bands = page.locator(".hit").evaluate_all(
        "hs => Object.fromEntries(hs.map(h => [h.dataset.window, getComputedStyle(h).borderTopColor]))"
    )
    colours = {"positive": "rgb(47, 143, 87)", "negative": "rgb(163, 38, 42)", "unsure": "rgb(212, 154, 26)"}
    assert {int(w): c for w, c in bands.items() if int(w) in expected} == {w: colours[v] for w, v in expected.items()}
    assert len(set(bands.values())) == 4  # the three values and the unlabeled tiles' grey


def test_no_page_is_wider_than_the_window(page, planted):  # noqa: F811
    """At a laptop's width and a narrow window's, in the list and in the grid, no main
    page scrolls sideways, and the recording's spectrogram fits inside the page."""
    project, deployment, user = planted
    recording = deployment.recordings.order_by("filename").first()
    window = recording.windows.order_by("start_s").first()
    label = project.labels.get(name="bird")
    set_label(project, user, window.pk, label.pk, "positive")
    pages = [
        "/",
        "/account/",
        f"/projects/{project.pk}/",
        f"/projects/{project.pk}/settings/",
        f"/projects/{project.pk}/deployments/{deployment.pk}/",
        f"/projects/{project.pk}/recordings/{recording.pk}/",
        f"/projects/{project.pk}/windows/{window.pk}/",
        f"/projects/{project.pk}/search/?window={window.pk}",
        f"/projects/{project.pk}/labels/{label.pk}/",
    ]
    log_in(page, "annotator")
    page.wait_for_selector("h1:has-text('Projects')")
    overflowing = []
    for layout in ("list", "grid"):
        page.evaluate(f"localStorage.setItem('hitLayout', '{layout}')")
        for width in (1366, 800):
            page.set_viewport_size({"width": width, "height": 900})
            for path in pages:
                page.goto(path)
                page.wait_for_load_state("load")
                wide = page.evaluate("document.documentElement.scrollWidth - innerWidth")
                if wide > 0:
                    overflowing.append((layout, width, path, wide))
                    page.screenshot(path=OUTPUT_DIR / f"overflow-{len(overflowing)}.png", full_page=True)
                if path == f"/projects/{project.pk}/" and (layout, width) == ("list", 1366):
                    page.screenshot(path=OUTPUT_DIR / "project-first-steps.png", full_page=True)
                if "/recordings/" in path:
                    view = page.locator("[data-region-view]").bounding_box()
                    assert view["x"] + view["width"] <= width, (layout, width)
            page.screenshot(path=OUTPUT_DIR / f"label-review-{layout}-{width}px.png", full_page=True)
    assert overflowing == [], overflowing
    icon = page.request.get(page.get_attribute("link[rel=icon]", "href"))
    assert icon.ok and icon.headers["content-type"] == "image/svg+xml"


def test_the_recording_view_zooms_from_seconds_to_the_whole_file_with_a_playhead(page, planted, birdsong):  # noqa: F811
    project, deployment, _ = planted
    samples, rate = birdsong
    recording = deployment.recordings.order_by("filename").first()
    soundfile.write(recording.path, np.tile(samples, 9), rate)  # 90 s
    Recording.objects.filter(pk=recording.pk).update(duration_s=9 * len(samples) / rate)
    page.set_viewport_size({"width": 1366, "height": 900})
    log_in(page, "annotator")
    page.wait_for_selector("h1:has-text('Projects')")
    page.evaluate("localStorage.removeItem('recordingZoom')")
    page.goto(f"/projects/{project.pk}/recordings/{recording.pk}/")
    page.wait_for_selector(".hit.current")
    image = ".region-view img"
    loaded = f"document.querySelector('{image}').complete && document.querySelector('{image}').naturalWidth > 0"
    wait_until(page, loaded)
    assert "px_per_s=50" in page.get_attribute(image, "src")  # 30 s at first

    for _ in range(3):
        page.keyboard.press("[")
    assert "overview.png" in page.get_attribute(image, "src")  # zoomed out as far as it goes: the whole file
    wait_until(page, loaded)
    assert page.locator("[data-zoom-label]").inner_text().startswith("the whole file")
    box = page.locator(image).bounding_box()
    assert box["x"] + box["width"] <= 1366 and page.evaluate("document.documentElement.scrollWidth <= innerWidth")

    for _ in range(5):
        page.keyboard.press("]")
    src = page.get_attribute(image, "src")
    assert "px_per_s=200" in src and "start=0&end=5" in src  # 5 s around the first window
    wait_until(page, loaded)
    assert page.evaluate(f"document.querySelector('{image}').naturalWidth") == 34 + 5 * 200
    for _ in range(3):
        page.keyboard.press("j")  # the fourth window, 3-8 s, is centred outside 0-5 s: the view follows it
    assert "start=2.5&end=7.5" in page.get_attribute(image, "src")
    page.keyboard.press(" ")
    wait_until(page, "!document.querySelector('.region-view .playhead').hidden")
    first = page.locator(".region-view .playhead").bounding_box()["x"]
    page.wait_for_timeout(600)
    assert page.locator(".region-view .playhead").bounding_box()["x"] > first  # it moves with the sound
    wait_until(page, loaded)
    page.screenshot(path=OUTPUT_DIR / "recording-zoomed.png", full_page=True)
    page.keyboard.press(" ")
    wait_until(page, "document.querySelector('.region-view .playhead').hidden")


def test_project_and_deployment_pages_show_training_and_ingest_as_they_happen(page, planted):  # noqa: F811
    """No reload: a file being embedded and a classifier being trained change on the page as
    the worker records them; the summary's window count is the sum of its rows'."""
    project, deployment, user = planted
    recording = deployment.recordings.order_by("filename").first()
    Recording.objects.filter(pk=recording.pk).update(status=RecordingStatus.EMBEDDING, windows_expected=6)
    model = recording.windows.first().model
    classifier = Classifier.objects.create(project=project, version=1, embedding_model=model, status=TaskStatus.RUNNING)
    log_in(page, "annotator")
    page.wait_for_selector("h1:has-text('Projects')")
    page.goto(f"/projects/{project.pk}/deployments/{deployment.pk}/")
    row = f"tr[data-recording='{recording.pk}']"
    page.wait_for_selector(f"{row} [data-field=status]:has-text('Embedding')")
    assert page.inner_text("[data-progress-url] [data-field=windows]") == "18"  # three finished files
    Recording.objects.filter(pk=recording.pk).update(status=RecordingStatus.DONE)
    page.wait_for_selector(f"{row} [data-field=status]:has-text('Done')")
    page.wait_for_selector(f"{row} [data-field=file] a")  # it opens now
    wait_until(page, "document.querySelector('[data-progress-url] [data-field=windows]').textContent === '24'")
    rows = page.locator("tr[data-recording] [data-field=windows]").all_inner_texts()
    assert sum(int(text) for text in rows) == 24

    page.goto(f"/projects/{project.pk}/")
    status = "tr[data-classifier-url] [data-field=status]"
    page.wait_for_selector(f"{status}:has-text('Running')")
    ClassifierLabel.objects.create(
        classifier=classifier, label=project.labels.get(name="bird"), index=0, roc_auc=0.875, average_precision=0.5
    )
    Classifier.objects.filter(pk=classifier.pk).update(status=TaskStatus.DONE)
    page.wait_for_selector("[data-field=status].status-done:has-text('Done')")
    assert page.inner_text("[data-field=roc_auc]") == "0.875"


def test_windows_per_second_stops_counting_when_the_work_ends(planted):
    _, deployment, _ = planted
    now = timezone.now()
    Deployment.objects.filter(pk=deployment.pk).update(ingest_started_at=now - dt.timedelta(seconds=100))
    # All four files (24 windows) finished 12 s after the ingest was queued, 88 s ago.
    deployment.recordings.update(updated_at=now - dt.timedelta(seconds=88), windows_done=6)
    deployment.refresh_from_db()
    assert deployment_progress(deployment).windows_per_s == pytest.approx(24 / 12)
    # While a file is still queued, the clock runs on.
    deployment.recordings.filter(pk=deployment.recordings.first().pk).update(status=RecordingStatus.QUEUED)
    assert deployment_progress(deployment).windows_per_s == pytest.approx(18 / 100, rel=0.05)


def test_the_api_reference_renders_offline_under_the_content_security_policy(page, planted):  # noqa: F811
    violations, errors, outside = [], [], []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def only_the_app(route):
        if route.request.url.startswith(("http://localhost", "http://127.0.0.1")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_app)  # nothing may come from anywhere but the app
    log_in(page, "annotator")
    page.wait_for_selector("h1:has-text('Projects')")
    with page.expect_navigation():  # linked from every page's footer
        page.locator("footer").get_by_role("link", name="API reference").click()
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    assert page.locator(".opblock").count() > 50  # every endpoint
    assert page.locator("text=/api/projects/{project_id}/deployments/{deployment_id}/uploads/").count() >= 1
    page.screenshot(path=OUTPUT_DIR / "api-docs.png")
    assert ({v.split(" violates")[0][:60] for v in violations}, errors, outside) == (set(), [], [])
