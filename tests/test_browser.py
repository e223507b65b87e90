"""The pages in a real browser: Debian's Chromium, headless, driven by Playwright.

Screenshots land in test-output/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil

import pytest

from annotations.deployments import create_deployment, create_project, queue_ingest
from annotations.labeling import set_label
from annotations.models import Annotation, Recording, RecordingStatus, Window
from tests.audio_corpus import make_recordings
from tests.conftest import OUTPUT_DIR, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (bash run.sh test installs it)"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # are synchronous all the same (Playwright's documented advice for Django).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def ingest_ridge(settings, tmp_path, birdsong, user, count: int):
    """A project with one server-folder deployment of ``count`` recordings, ingested by the worker."""
    samples, rate = birdsong
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path]
    recordings = make_recordings(tmp_path / "ridge", samples, rate, count=count)
    project = create_project(user, "Ridge survey", labels=["bird"])
    deployment = create_deployment(project, "Ridge", site="R1", server_folder=str(tmp_path / "ridge"))
    queue_ingest(deployment)
    pending = [RecordingStatus.QUEUED, RecordingStatus.EMBEDDING]
    wait_for(lambda: not Recording.objects.filter(deployment=deployment, status__in=pending).exists(), what="ingest")
    OUTPUT_DIR.mkdir(exist_ok=True)
    return project, deployment, recordings


def log_in(page, username: str) -> None:
    page.goto("/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "a-long-test-password")
    page.keyboard.press("Enter")


def test_find_similar_and_label_from_the_keyboard(page, celery_worker_process, settings, tmp_path, birdsong, make_user):
    user = make_user("annotator")
    project, deployment, _ = ingest_ridge(settings, tmp_path, birdsong, user, count=3)
    log_in(page, "annotator")
    page.get_by_role("link", name="Ridge survey").click()
    page.wait_for_selector("text=3 done, 0 failed of 3")
    page.screenshot(path=OUTPUT_DIR / "project.png", full_page=True)

    page.get_by_role("link", name="Ridge", exact=True).click()
    page.get_by_role("link", name=Recording.objects.filter(deployment=deployment).first().filename).click()
    page.get_by_role("link", name="Find similar").first.click()
    page.wait_for_selector(".hit.current")
    assert page.locator(".hit").count() == 11  # 12 windows in the deployment, less the query

    page.keyboard.press("1")
    page.wait_for_selector(".hit:nth-child(1)[data-labeled=positive]")
    page.keyboard.press("2")
    page.wait_for_selector(".hit:nth-child(2)[data-labeled=negative]")
    page.keyboard.press("3")
    page.wait_for_selector(".hit:nth-child(3)[data-labeled=unsure]")
    page.keyboard.press("u")
    page.wait_for_selector("#flash:has-text('Undone')")
    page.screenshot(path=OUTPUT_DIR / "search.png", full_page=True)

    values = sorted(Annotation.objects.filter(annotator=user).values_list("value", flat=True))
    assert values == ["negative", "positive"]
    page.reload()
    assert "bird: positive (annotator)" in page.locator(".hit").nth(0).inner_text()


def test_train_run_and_look_at_the_results(page, celery_worker_process, settings, tmp_path, birdsong, make_user):
    user = make_user("annotator")
    project, deployment, recordings = ingest_ridge(settings, tmp_path, birdsong, user, count=8)
    label = project.labels.get()
    for recording in recordings:
        windows = Window.objects.filter(recording__path=str(recording.path)).order_by("start_s")
        for index, window in enumerate(windows.values_list("pk", flat=True)):
            value = "positive" if index == recording.song_window else "negative"
            set_label(project, user, window, label.pk, value)
    log_in(page, "annotator")
    page.get_by_role("link", name="Ridge survey").click()
    page.select_option("select[name=labels]", [str(label.pk)])
    page.get_by_role("button", name="Train").click()
    page.get_by_role("link", name="v1").click()
    page.wait_for_selector("svg.chart", timeout=60_000)  # the page refreshes itself until training is done
    assert "ROC-AUC" in page.content()
    assert page.locator("svg.chart polyline").count() == 1  # the PR curve
    page.get_by_role("button", name="Run").click()
    page.get_by_role("link", name="Ridge", exact=True).click()
    page.wait_for_selector("th:has-text('Day (UTC)')", timeout=60_000)
    page.screenshot(path=OUTPUT_DIR / "detections.png", full_page=True)
    page.go_back()
    page.screenshot(path=OUTPUT_DIR / "classifier.png", full_page=True)
