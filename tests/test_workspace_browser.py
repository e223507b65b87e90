"""The ecologist's workspace in a real browser: the grid of hits, pages that fit the
window, the zoomable recording view. Planted embeddings of real birdsong, so no worker.

Screenshots land in test-output/ for a person to look at.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import soundfile

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.models import Annotation, Recording, RecordingStatus, Window
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
        path = tmp_path / f"ridge{index}.wav"
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
    page.goto(f"/projects/{project.pk}/search/?window={example.pk}")
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
