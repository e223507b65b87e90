"""A query from the microphone, in a real browser: Chromium's fake capture device plays a
real birdsong file into MediaRecorder; the worker embeds the recording as a clip, and the
search finds the windows of that song. Screenshots land in test-output/."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import soundfile

from annotations.models import ClipQuery, Window
from tests.conftest import OUTPUT_DIR, wait_for
from tests.test_browser import CHROMIUM, ingest_ridge, log_in

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (bash run.sh test installs it)"),
]


@pytest.fixture
def microphone_page(tmp_path, birdsong, live_server):
    """A page whose microphone plays the song that make_recordings mixes into recording 0
    (its first 3 s, then quiet), granted without a prompt."""
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    samples, rate = birdsong
    song = np.concatenate([samples[: 3 * rate], np.zeros(3 * rate, np.float32)])
    played = tmp_path / "microphone.wav"
    soundfile.write(played, song, rate, subtype="PCM_16")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={played}",
            ],
        )
        context = browser.new_context(base_url=live_server.url, permissions=["microphone"])
        yield context.new_page()
        browser.close()


def test_a_call_recorded_from_the_microphone_finds_the_windows_of_that_song(
    microphone_page, celery_worker_process, settings, tmp_path, birdsong, make_user
):
    page = microphone_page
    user = make_user("annotator")
    project, deployment, recordings = ingest_ridge(settings, tmp_path, birdsong, user, count=3)
    song_windows = {
        Window.objects.get(recording__filename=r.path.name, start_s=3.0 * r.song_window).pk for r in recordings
    }
    log_in(page, "annotator")
    for width in (1366, 800):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"/projects/{project.pk}/search/")
        form = page.locator("form[data-clip-form]")
        form.get_by_role("button", name="● Record").click()
        form.get_by_role("button", name="■ Stop").wait_for()
        page.wait_for_timeout(3500)  # the song plays into the microphone
        form.get_by_role("button", name="■ Stop").click()
        message = form.locator("+ p.form-message")
        message.get_by_text("Recorded").wait_for()
        assert page.evaluate("document.querySelector('[data-clip-file]').files[0].name").startswith("microphone-")
        assert form.locator("[data-clip-preview]").is_visible()
        page.screenshot(path=OUTPUT_DIR / f"microphone-recorded-{width}.png")
        form.get_by_role("button", name="Search with this clip").click()
        page.wait_for_url(re.compile(r"history="), timeout=120_000)
        clip = ClipQuery.objects.latest("pk")
        assert clip.filename.startswith("microphone-") and clip.status == "done"
        hits = [int(w) for w in page.locator(".hit").evaluate_all("hs => hs.map(h => h.dataset.window)")]
        # The three windows that hold the song come first: the rest is brown noise.
        assert set(hits[:3]) == song_windows, hits[:6]
        page.screenshot(path=OUTPUT_DIR / f"microphone-hits-{width}.png")
    wait_for(lambda: ClipQuery.objects.count() == 2, what="both clips")
