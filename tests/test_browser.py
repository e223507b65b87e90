"""The pages in a real browser: Debian's Chromium, headless, driven by Playwright.

Screenshots land in test-output/ for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from annotations.deployments import create_deployment, create_project, grant_folder, queue_ingest
from annotations.labeling import set_label
from annotations.membership import add_member
from annotations.models import (
    Annotation,
    ClipQuery,
    LabelChange,
    Recording,
    RecordingStatus,
    UploadSession,
    Window,
)
from tests.audio_corpus import make_recordings
from tests.conftest import OUTPUT_DIR, wait_for
from tests.test_detection_rates import two_site_survey

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
    grant_folder(project, str(tmp_path / "ridge"))
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
    # Logged in once the log-in page is left: a navigation begun before then aborts this one.
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def wait_until(page, expression: str, timeout_ms: int = 30_000) -> None:
    """Poll ``expression`` in the page until it is truthy. Not page.wait_for_function:
    Playwright compiles its predicate with ``new Function`` inside the page, which the
    app's Content-Security-Policy refuses; page.evaluate runs outside it."""
    for _ in range(timeout_ms // 100):
        if page.evaluate(expression):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {expression}")


def drag_a_box(page) -> tuple[dict, str]:
    """Drag a box on the recording view's spectrogram, over 30-80% of its width and 20-60%
    of its height; returns the picture's bounding box and the label the page gives the box."""
    picture = page.locator(".region-view img").bounding_box()
    page.mouse.move(picture["x"] + 0.3 * picture["width"], picture["y"] + 0.2 * picture["height"])
    page.mouse.down()
    page.mouse.move(picture["x"] + 0.8 * picture["width"], picture["y"] + 0.6 * picture["height"], steps=8)
    page.mouse.up()
    return picture, page.inner_text("[data-region-label]")


def follow_link(page, text: str, limit: int = 80) -> None:
    """Press Tab until the focused link reads ``text``, then Enter: the keyboard way to follow it."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.textContent.trim()") == text:
            with page.expect_navigation():
                page.keyboard.press("Enter")
            return
    raise AssertionError(f"no focusable element reads {text!r}")


def test_a_whole_labeling_session_with_the_keyboard_alone(
    page, celery_worker_process, settings, tmp_path, birdsong, make_user
):
    """Open a project, pick an example in a recording, search, play a hit, label ten hits,
    undo one, reload: exactly nine labels, with the values given. No mouse anywhere."""
    user = make_user("annotator")
    project, deployment, _ = ingest_ridge(settings, tmp_path, birdsong, user, count=3)
    page.goto("/")
    page.keyboard.type("annotator")  # the user name field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type("a-long-test-password")
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:has-text('Projects')")

    follow_link(page, "Ridge survey")
    page.wait_for_selector("text=3 done, 0 failed of 3")
    page.screenshot(path=OUTPUT_DIR / "project.png", full_page=True)
    follow_link(page, "Ridge")
    first = Recording.objects.filter(deployment=deployment).order_by("filename").first()
    follow_link(page, first.filename)
    page.wait_for_selector(".region-view img.spectrogram")
    wait_until(page, "document.querySelector('.region-view img').naturalWidth > 0")
    assert page.evaluate("scrollY") == 0  # opened at its header, not scrolled to the first window
    page.screenshot(path=OUTPUT_DIR / "recording.png", full_page=True)
    # Under the picture, time in the file and on the clock (the file's name says 05:00:00
    # UTC), and a legend for every mark drawn over it.
    ticks = page.locator("[data-time-axis] .tick").all_inner_texts()
    assert len(ticks) >= 3 and ticks[0].split("\n") == ["0 s", "05:00:00"], ticks
    assert page.locator(".legend .swatch").count() == 3
    for width in (800, 1280):  # redrawn to the new width, labels never crowded
        page.set_viewport_size({"width": width, "height": 900})
        wait_until(page, f"innerWidth === {width}")
        page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        spacing = page.evaluate(
            "[...document.querySelectorAll('[data-time-axis] .tick')].map((t) => t.getBoundingClientRect().x)"
        )
        assert len(spacing) >= 3 and all(b - a >= 80 for a, b in zip(spacing, spacing[1:], strict=False)), spacing
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), width
        page.screenshot(path=OUTPUT_DIR / f"recording-axis-{width}px.png")
    page.keyboard.press("j")  # the recording's second window is the example
    # The window moved to sits below the sticky labeling toolbar, never under it.
    toolbar = page.locator(".toolbar").bounding_box()
    assert page.locator(".hit.current").bounding_box()["y"] >= toolbar["y"] + toolbar["height"] - 1
    example = int(page.get_attribute(".hit.current", "data-window"))
    outline = page.locator(".region-view .current-window").bounding_box()  # outlined on the spectrogram
    image = page.locator(".region-view img").bounding_box()
    natural = page.evaluate("document.querySelector('.region-view img').naturalWidth")
    axis = 34 * image["width"] / natural  # the picture is drawn to the page's width
    seconds = float(page.get_attribute(".region-view", "data-duration"))  # the whole file is shown
    assert outline["x"] - image["x"] == pytest.approx(axis + 3 * (image["width"] - axis) / seconds, abs=2)
    with page.expect_navigation():
        page.keyboard.press("m")
    page.wait_for_selector(".hits .hit.current")
    assert "history=" in page.url
    assert page.locator(".hit").count() == 11  # 12 windows in the deployment, less the example
    assert example not in [int(w) for w in page.locator(".hit").evaluate_all("hs => hs.map(h => h.dataset.window)")]

    page.keyboard.press(" ")
    wait_until(page, "!document.querySelector('.hit.current audio').paused")
    page.keyboard.press(" ")

    given = []
    for index in range(10):
        value = ("positive", "negative")[index % 3 == 2]
        page.keyboard.press("1" if value == "positive" else "2")
        page.wait_for_selector(f".hit:nth-child({index + 1})[data-labeled={value}]")
        given.append((int(page.locator(".hit").nth(index).get_attribute("data-window")), value))
    page.keyboard.press("u")
    page.wait_for_selector("#flash:has-text('Undone')")
    page.keyboard.press("?")
    page.wait_for_selector("#keys-help[open]")
    page.screenshot(path=OUTPUT_DIR / "keys-help.png")
    page.keyboard.press("Escape")
    page.keyboard.press("s")  # half speed
    assert page.eval_on_selector("[data-playback=rate]", "select => select.value") == "0.5"
    page.keyboard.press("s")
    page.keyboard.press("s")  # past a quarter to double speed, then back round to half
    assert page.eval_on_selector("[data-playback=rate]", "select => select.value") == "2"
    page.keyboard.press("s")
    page.keyboard.press("s")
    assert page.eval_on_selector("[data-playback=rate]", "select => select.value") == "0.5"
    page.keyboard.press("+")  # brighter spectrograms, all of them
    wait_until(page, "[...document.querySelectorAll('.hit img')].every((i) => i.src.includes('gain=10'))")
    wait_until(page, "[...document.querySelectorAll('.hit img')].every((i) => i.complete && i.naturalWidth)")
    page.screenshot(path=OUTPUT_DIR / "search.png", full_page=True)
    page.keyboard.press("-")
    page.keyboard.press("c")  # context: heard, and shown between two lines on every picture
    wait_until(page, "[...document.querySelectorAll('.hit img')].every((i) => i.src.includes('context=2'))")
    page.keyboard.press("c")

    page.reload()
    page.wait_for_selector(".hit.current")
    saved = set(Annotation.objects.filter(annotator=user).values_list("window_id", "value"))
    assert saved == set(given[:9])
    chips = page.locator(".hit .chip").evaluate_all(
        "cs => cs.map(c => [Number(c.closest('.hit').dataset.window), c.dataset.value])"
    )
    assert {tuple(chip) for chip in chips} == set(given[:9])

    # "n" marks the two hits nobody labeled negative in one step; "u" takes both back.
    removed_before = LabelChange.objects.filter(annotator=user, new_value="").count()
    page.keyboard.press("n")
    page.wait_for_selector("#flash:has-text('2 unlabeled hits marked')")
    assert Annotation.objects.filter(annotator=user).count() == 11
    # The undo is one request: leaving the page at once still leaves the labels as before "n".
    page.keyboard.press("u")
    page.get_by_role("link", name=project.name).first.click()
    wait_for(
        lambda: set(Annotation.objects.filter(annotator=user).values_list("window_id", "value")) == set(given[:9]),
        timeout=10,
        what="the undo of the page-wide negative",
    )
    assert LabelChange.objects.filter(annotator=user, new_value="").count() == 2 + removed_before

    page.goto(f"/projects/{project.pk}/labels/{project.labels.get().pk}/")
    page.wait_for_selector(".hit")
    assert page.locator(".hit").count() == 9
    page.screenshot(path=OUTPUT_DIR / "label-review.png", full_page=True)


def test_train_run_and_look_at_the_results(page, celery_worker_process, settings, tmp_path, birdsong, make_user):
    user = make_user("annotator")
    project, deployment, recordings = ingest_ridge(settings, tmp_path, birdsong, user, count=8)
    label = project.labels.get()
    for recording in recordings:
        windows = Window.objects.filter(recording__path=str(recording.path)).order_by("start_s")
        for index, window in enumerate(windows.values_list("pk", flat=True)):
            if index == len(windows) - 1 != recording.song_window:
                continue  # left for the review queue
            value = "positive" if index == recording.song_window else "negative"
            set_label(project, user, window, label.pk, value)
    log_in(page, "annotator")
    page.get_by_role("link", name="Ridge survey").click()
    page.check(f"input[name=labels][value='{label.pk}']")
    page.get_by_role("button", name="Train").click()
    page.get_by_role("link", name="v1").click()
    page.wait_for_selector("svg.chart", timeout=60_000)  # the page refreshes itself until training is done
    assert "ROC-AUC" in page.content()
    assert page.locator("svg.chart").first.locator("polyline").count() == 1  # the PR curve
    assert page.locator("svg.chart[aria-label='Learning curve (held out)'] circle").count() == 1  # v1
    assert "weak negatives (unlabeled windows at a small weight" in page.locator("p.evaluation").inner_text()
    # The suggested queue, with its reason, scoped by the search's filters.
    # Scoring is queued once training is done: the page may have stopped refreshing before.
    version = project.classifiers.get(version=1)
    wait_for(lambda: type(version).objects.get(pk=version.pk).scoring_status == "done", what="scoring")
    page.reload()
    page.get_by_role("link", name="suggested").first.click()
    assert "Suggested:" in page.locator("p.suggestion").inner_text()
    page.select_option("select[name=deployment]", str(deployment.pk))
    page.get_by_role("button", name="Show").click()
    queued = page.locator(".hit").count()
    assert f"deployment={deployment.pk}" in page.url and queued > 0
    assert "threshold is 0.50" in page.content()
    progress = page.locator("[data-review-progress] span")
    assert progress.inner_text() == f"0 of {queued} labeled"
    page.locator(".hit").first.click()
    page.keyboard.press("1")
    page.wait_for_selector(f"[data-review-progress] span:has-text('1 of {queued} labeled')")
    for width in (1366, 800):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=OUTPUT_DIR / f"review-queue-{width}.png", full_page=True)
    # Retrain from the queue: the next version's page, which offers its own suggestion.
    page.get_by_role("button", name="Retrain now").click()
    page.wait_for_url(re.compile(r"/classifiers/\d+/$"))
    assert page.locator("h1").inner_text() == "Classifier v2"
    page.wait_for_selector("svg.chart", timeout=60_000)
    page.goto(f"/projects/{project.pk}/classifiers/{project.classifiers.get(version=1).pk}/")
    page.get_by_role("button", name="Run").click()
    page.get_by_role("link", name="Ridge", exact=True).click()
    page.wait_for_selector("figure.chart-figure svg.chart", timeout=60_000)  # refreshed until the run is done
    page.screenshot(path=OUTPUT_DIR / "detections.png", full_page=True)
    page.go_back()
    page.screenshot(path=OUTPUT_DIR / "classifier.png", full_page=True)


def test_a_large_upload_goes_up_in_chunks_and_survives_a_dropped_one(
    page, celery_worker_process, settings, tmp_path, birdsong, make_user
):
    settings.MEDIA_ROOT = tmp_path / "media"
    user = make_user("admin")
    project = create_project(user, "Uploads", labels=["bird"])
    deployment = create_deployment(project, "Field")
    samples, rate = birdsong
    path = tmp_path / "20240521_053000.WAV"
    soundfile.write(path, np.tile(samples, 30), rate, subtype="PCM_16")  # 5 minutes, 19 MB: 3 chunks
    dropped = []

    def drop_the_second_chunk(route):
        if route.request.method == "PUT" and route.request.headers.get("upload-offset") != "0" and not dropped:
            dropped.append(route.request.headers["upload-offset"])
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/uploads/*/", drop_the_second_chunk)
    log_in(page, "admin")
    page.wait_for_selector("h1:has-text('Projects')")
    page.goto(f"/projects/{project.pk}/deployments/{deployment.pk}/")
    page.set_input_files("[data-chunked-upload] input[type=file]", str(path))
    page.click("[data-chunked-upload] button.primary")
    # Waiting inside Playwright: the sync API runs the route handler only while it is called.
    for _ in range(240):
        if recording := Recording.objects.filter(deployment=deployment).first():
            break
        page.wait_for_timeout(500)
    assert recording is not None, page.inner_text("form[data-chunked-upload]")
    assert dropped == [str(8 * 1024 * 1024)]  # the second chunk was lost once, then sent again
    assert Path(recording.path).read_bytes() == path.read_bytes()
    session = UploadSession.objects.get(recording=recording)
    assert session.received_bytes == session.size_bytes == path.stat().st_size
    done = wait_for(
        lambda: Recording.objects.filter(pk=recording.pk, status=RecordingStatus.DONE).first(), what="its ingest"
    )
    assert done.started_at.isoformat().startswith("2024-05-21T05:30:00")
    page.screenshot(path=OUTPUT_DIR / "upload.png", full_page=True)


def test_the_whole_file_plays_with_a_playhead_the_view_follows_and_rows_fit_twenty_hits(
    page, celery_worker_process, settings, tmp_path, birdsong, make_user
):
    """Shift+space plays a recording from the window in focus: the playhead moves at the
    chosen speed, the view turns to the next stretch at its edge, the window under the
    playhead takes the focus, pause and play go on from the playhead. Compact rows then
    hold 20 and more hits on a screen of 1366 x 800, and of 800 x 800."""
    user = make_user("annotator")
    project, deployment, _ = ingest_ridge(settings, tmp_path, birdsong, user, count=8)
    log_in(page, "annotator")
    recording = Recording.objects.filter(deployment=deployment).order_by("filename").first()
    page.goto(f"/projects/{project.pk}/recordings/{recording.pk}/")
    page.evaluate("localStorage.setItem('recordingZoom', '0')")  # 5 s at a time
    page.reload()
    wait_until(page, "document.querySelector('.region-view img').naturalWidth > 0")
    assert page.inner_text("[data-zoom-label]") == "0.0–5.0 s"
    playing = "Number(document.querySelector('[data-region-view]').dataset.playing ?? -1)"

    def advance_over_a_second() -> float:
        before = page.evaluate(playing)
        page.wait_for_timeout(1000)
        return page.evaluate(playing) - before

    page.keyboard.press("Shift+Space")
    wait_until(page, f"{playing} > 0.2")
    assert 0.6 <= advance_over_a_second() <= 1.5
    assert page.locator(".region-view .playhead").is_visible()
    assert page.locator("[data-play-file]").inner_text().startswith("❚❚ Pause")
    assert page.evaluate("document.querySelector('.hit audio').paused")  # the file, not a window
    page.screenshot(path=OUTPUT_DIR / "recording-playhead.png")
    page.keyboard.press("Shift+Space")  # pause
    wait_until(page, f"{playing} === -1")
    page.keyboard.press("s")  # half speed, and on from where it stopped
    page.keyboard.press("Shift+Space")
    wait_until(page, f"{playing} > 0")
    assert 0.2 <= advance_over_a_second() <= 0.8
    page.keyboard.press("s")
    page.keyboard.press("s")  # double speed, at once, from the playhead
    wait_until(page, "document.querySelector('[data-zoom-label]').textContent === '5.0–10.0 s'", 10_000)
    at = page.evaluate(playing)
    current = page.locator(".hit.current")
    assert float(current.get_attribute("data-start")) <= at < float(current.get_attribute("data-end")) + 0.5
    wait_until(page, f"{playing} === -1", 15_000)  # to the file's end, and stopped there
    assert page.locator("[data-play-file]").inner_text().startswith("▶ Play")

    # A box in time and frequency: only its band is embedded for the search.
    page.evaluate("scrollTo(0, 0)")
    picture, label = drag_a_box(page)
    assert re.fullmatch(r"[\d.]+–[\d.]+ s · [\d.]+–[\d.]+ kHz", label), label
    drawn = page.locator(".region-view .region").bounding_box()
    assert drawn["height"] == pytest.approx(0.4 * picture["height"], abs=2)
    page.screenshot(path=OUTPUT_DIR / "recording-box.png")
    page.click("[data-box-label=positive]")  # a label of the window under the box, with its band
    chip = page.locator(".hit.current .chip")
    chip.wait_for()
    assert "box" in chip.inner_text() and "kHz" in chip.inner_text()
    boxed_label = Annotation.objects.get(annotator=user)
    assert boxed_label.value == "positive" and 0 < boxed_label.low_hz < boxed_label.high_hz <= 16_000
    page.keyboard.press("u")
    page.wait_for_selector("#flash:has-text('Undone')")
    assert not Annotation.objects.filter(annotator=user).exists()
    page.click("[data-region-search]")
    page.wait_for_url(lambda url: "history=" in url, timeout=60_000)
    page.wait_for_selector(".hit")
    boxed = ClipQuery.objects.latest("pk")
    low, high = (float(edge) * 1000 for edge in label.split(" · ")[1].removesuffix(" kHz").split("–"))
    assert boxed.low_hz == pytest.approx(low, abs=60) and boxed.high_hz == pytest.approx(high, abs=60)
    assert 0 < boxed.low_hz < boxed.high_hz <= 16_000 and boxed.status == "done"

    page.set_viewport_size({"width": 1366, "height": 800})
    example = Window.objects.filter(recording=recording).order_by("start_s").first()
    page.goto(f"/projects/{project.pk}/search/?window={example.pk}")
    page.wait_for_selector(".hit.current")
    assert page.locator(".hit").count() == 31
    page.select_option("[data-hit-layout]", "rows")
    for width in (1366, 800):
        page.set_viewport_size({"width": width, "height": 800})
        wait_until(page, f"innerWidth === {width}")
        page.evaluate("document.querySelector('.hit').scrollIntoView()")
        wait_until(page, "[...document.querySelectorAll('.hit img')].every((i) => i.complete)")
        whole = page.evaluate(
            "(() => { const bar = document.querySelector('.toolbar').getBoundingClientRect().bottom;"
            " return [...document.querySelectorAll('.hit')].filter((h) => { const r = h.getBoundingClientRect();"
            " return r.top >= bar - 1 && r.bottom <= innerHeight; }).length; })()"
        )
        page.screenshot(path=OUTPUT_DIR / f"hits-rows-{width}px.png")
        assert whole >= 20, (width, whole)
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), width
    page.keyboard.press("1")  # the keys work in rows as in the list
    page.wait_for_selector(".hit:nth-child(1)[data-labeled=positive]")


def test_the_map_is_drawn_by_the_worker_hovered_and_lassoed_into_a_labeling_list(
    page, celery_worker_process, settings, tmp_path, birdsong, make_user
):
    """From the project page to its map: drawn by the worker with a progress bar, coloured
    by site, a dot's spectrogram on hover, a loop around every dot sends them to a labeling
    list and the 20 nearest their centre to a search; at 1366 and 800 px."""
    user = make_user("annotator")
    project, deployment, _ = ingest_ridge(settings, tmp_path, birdsong, user, count=3)
    log_in(page, "annotator")
    page.goto(f"/projects/{project.pk}/")
    page.get_by_role("link", name="Map of the sounds").click()
    page.get_by_role("button", name="Draw the map").click()
    page.wait_for_selector("[data-map-canvas][data-points='12']", timeout=60_000)
    assert page.inner_text("[data-map-legend]") == "R1 (12)"
    page.select_option("[data-map-colour]", "score")  # no classifier yet: says so, keeps the map
    page.wait_for_selector("#flash:has-text('no classifier has scored the windows')")
    assert page.locator("[data-map-label-choice]").is_visible()
    page.select_option("[data-map-colour]", "site")
    for width in (1366, 800):
        page.set_viewport_size({"width": width, "height": 800})
        wait_until(page, f"innerWidth === {width}")
        box = page.locator("[data-map-canvas]").bounding_box()
        assert box["width"] <= width and page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        page.screenshot(path=OUTPUT_DIR / f"map-{width}px.png", full_page=True)
    page.evaluate("document.querySelector('[data-map-canvas]').scrollIntoView({ block: 'center' })")
    box = page.locator("[data-map-canvas]").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 800  # the whole plot on the screen
    first = page.evaluate(
        "fetch(document.querySelector('[data-map]').dataset.pointsUrl).then((r) => r.json())"
        ".then((p) => [p.x[0], p.y[0], p.window_ids[0]])"
    )
    pad = 12
    x = box["x"] + pad + (first[0] + 1) / 2 * (box["width"] - 2 * pad)
    y = box["y"] + pad + (1 - first[1]) / 2 * (box["height"] - 2 * pad)
    page.mouse.move(x, y)
    tooltip = page.locator("[data-map-tooltip]")
    tooltip.wait_for(state="visible")
    assert f"/windows/{first[2]}/spectrogram.png" in tooltip.locator("img").get_attribute("src")
    wait_until(page, "document.querySelector('[data-map-tooltip] img').complete")
    page.screenshot(path=OUTPUT_DIR / "map-hover.png")
    # A loop around the whole plot.
    corners = [
        (box["x"] + 2, box["y"] + 2),
        (box["x"] + box["width"] - 2, box["y"] + 2),
        (box["x"] + box["width"] - 2, box["y"] + box["height"] - 2),
        (box["x"] + 2, box["y"] + box["height"] - 2),
    ]

    def draw_loop():
        page.mouse.move(*corners[0])
        page.mouse.down()
        for corner in [*corners[1:], corners[0]]:
            page.mouse.move(*corner, steps=5)
        page.mouse.up()

    draw_loop()
    assert page.inner_text("[data-map-count]") == "12 windows selected"
    search = page.get_attribute("[data-map-search]", "href")
    assert search.count("window=") == 12
    page.keyboard.press("Escape")
    assert page.locator("[data-map-selection]").is_hidden()
    draw_loop()
    with page.expect_navigation():
        page.click("[data-map-label-them]")
    page.wait_for_selector(".hit.current")
    assert page.locator(".hit").count() == 12
    assert page.inner_text("h1") == "12 selected windows"
    page.keyboard.press("1")
    page.wait_for_selector(".hit:nth-child(1)[data-labeled=positive]")
    assert Annotation.objects.filter(annotator=user, value="positive").count() == 1


def test_blind_review_hides_other_annotators_labels(
    page, celery_worker_process, settings, tmp_path, birdsong, make_user
):
    user = make_user("annotator")
    colleague = make_user("colleague")
    project, deployment, _ = ingest_ridge(settings, tmp_path, birdsong, user, count=1)
    add_member(project, colleague.username, "annotator")
    windows = list(Window.objects.filter(recording__deployment=deployment).order_by("start_s"))
    set_label(project, colleague, windows[2].pk, project.labels.get().pk, "positive")
    log_in(page, "annotator")
    page.wait_for_selector("h1:has-text('Projects')")
    page.goto(f"/projects/{project.pk}/search/?window={windows[0].pk}")
    theirs = page.locator(f".hit[data-window='{windows[2].pk}'] .chip")
    assert theirs.is_visible() and "colleague" in theirs.inner_text()
    page.check("[data-blind-review]")
    assert not theirs.is_visible()
    page.reload()  # the choice is remembered
    assert page.is_checked("[data-blind-review]") and not theirs.is_visible()
    page.check("[data-auto-play]")  # after a label, the next hit plays by itself
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("1")
    wait_until(page, "!document.querySelectorAll('.hit')[1].querySelector('audio').paused")


def test_the_pages_run_their_scripts_under_the_content_security_policy(
    page, celery_worker_process, settings, tmp_path, birdsong, make_user
):
    """The main pages at a laptop's width and a narrow window's: their scripts run (lists
    of hits get the keyboard focus, progress is polled from the API) and the browser
    reports no Content-Security-Policy violation and no script error."""
    user = make_user("annotator")
    project, deployment, _ = ingest_ridge(settings, tmp_path, birdsong, user, count=1)
    recording = deployment.recordings.get()
    window = Window.objects.filter(recording=recording).order_by("start_s").first()
    violations, errors = [], []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    progress_poll = re.compile(rf"/api/projects/{project.pk}/deployments/{deployment.pk}/$")
    pages = {  # path: what the page's script does on load
        "/": None,
        f"/projects/{project.pk}/": progress_poll,
        f"/projects/{project.pk}/settings/": None,
        f"/projects/{project.pk}/deployments/{deployment.pk}/": progress_poll,
        f"/projects/{project.pk}/recordings/{recording.pk}/": ".hit.current",
        f"/projects/{project.pk}/windows/{window.pk}/": ".hit.current",
        f"/projects/{project.pk}/search/?window={window.pk}": ".hit.current",
        "/account/": None,
    }
    for width in (1366, 800):
        page.set_viewport_size({"width": width, "height": 640})  # short: a first hit below the fold
        page.context.clear_cookies()
        page.goto("/accounts/login/")
        assert page.evaluate("typeof csrfToken") == "function"  # app.js ran
        log_in(page, "annotator")
        page.wait_for_selector("h1:has-text('Projects')")
        for path, on_load in pages.items():
            if isinstance(on_load, re.Pattern):
                with page.expect_response(lambda response, pattern=on_load: pattern.search(response.url)):
                    page.goto(path)
            else:
                page.goto(path)
                if on_load:
                    page.wait_for_selector(on_load)
                    # The focus is on the first hit, but the page opens at its top.
                    assert page.evaluate("scrollY") == 0, (path, width)
            assert page.evaluate("typeof csrfToken") == "function", path
        page.screenshot(path=OUTPUT_DIR / f"search-{width}px.png", full_page=True)
    assert violations == []
    assert errors == []


def test_the_run_page_charts_and_map_fit_and_download(page, make_user):
    """The run page's charts and map at a laptop's width and a narrow window's: nothing
    overflows, no Content-Security-Policy violation, and a chart saves as a real PNG."""
    project, run = two_site_survey(make_user("owner"))
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    log_in(page, "owner")
    page.wait_for_selector("h1:has-text('Projects')")
    for width in (1366, 800):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"/projects/{project.pk}/runs/{run.pk}/")
        page.wait_for_selector("figure.chart-figure svg.chart")
        assert page.locator("figure.chart-figure").count() == 6
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), width
        page.screenshot(path=OUTPUT_DIR / f"run-charts-{width}px.png", full_page=True)
    page.locator("figure.chart-figure", has=page.locator("svg[aria-label*='by deployment']")).first.screenshot(
        path=OUTPUT_DIR / "site-map.png"
    )
    with page.expect_download() as download:
        page.locator("[data-chart-download=png]").first.click()
    assert download.value.suggested_filename == "kiwi-per-day.png"
    assert Path(download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as download:
        page.locator("[data-chart-download=svg]").first.click()
    assert Path(download.value.path()).read_text().startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    # Detections narrowed to one label, in time order; the exports follow.
    page.select_option("select[name=label]", label="morepork")
    page.select_option("select[name=order]", "time")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"order=time"))
    assert page.locator("ol.hits .hit").count() == 1 and "1 detection (windows);" in page.content()
    assert "order=time" in page.get_by_role("link", name="Download CSV").get_attribute("href")
    page.screenshot(path=OUTPUT_DIR / "detections-filtered.png", full_page=True)
    # Relative to sunrise instead (the form's default minutes: -30 to 90); the exports follow.
    page.select_option("select[name=sun]", "sunrise")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"sun=sunrise"))
    assert page.locator("select[name=sun]").input_value() == "sunrise"
    assert "sun=sunrise" in page.get_by_role("link", name="Download CSV").get_attribute("href")
    assert violations == []


def test_a_refused_training_says_why_beside_the_train_button(page, make_user):
    user = make_user("annotator")
    create_project(user, "Quiet valley", labels=["wren", "owl"])
    log_in(page, "annotator")
    for width in (1366, 800):
        page.set_viewport_size({"width": width, "height": 800})
        page.get_by_role("link", name="Quiet valley").click()
        page.get_by_role("checkbox", name="owl").check()
        page.get_by_role("button", name="Train").click()
        message = page.locator("form[data-api-form] + p.form-message.error")
        message.wait_for()
        assert "no labeled windows yet" in message.inner_text()
        # In view where the click was, not a screen away at the top of the page.
        box = message.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 800, box
        page.screenshot(path=OUTPUT_DIR / f"train-refused-{width}.png")
        page.goto("/")


def test_a_bat_deployment_is_added_slowed_down_and_shown_in_its_own_time_and_frequency(
    page, celery_worker_process, settings, tmp_path, make_user
):
    """An admin adds real bat recordings at 312.5 kHz with the form's audio speed 0.1: the
    worker embeds them slowed ten times; the recording view zooms to half a second, labels
    its axis in the file's seconds, plays the file at a tenth of its pace (a second heard
    is 0.1 s of the file), and a box on it reads ultrasonic kHz."""
    from tests.test_time_expansion import bat_files

    folder = tmp_path / "roost"
    folder.mkdir()
    for path in bat_files()[:2]:
        shutil.copy(path, folder / path.name)
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path]
    project = create_project(make_user("admin"), "Bats")
    grant_folder(project, str(folder))
    log_in(page, "admin")
    page.goto(f"/projects/{project.pk}/")
    form = page.locator("#add-deployment")
    form.locator("input[name=name]").fill("Roost 0166")
    form.locator("input[name=server_folder]").fill(str(folder))
    form.locator("details.time-expansion summary").click()
    form.locator("input[name=speed_factor]").fill("0.1")
    form.locator("input[name=low_hz]").fill("15000")
    form.locator("input[name=high_hz]").fill("140000")
    page.screenshot(path=OUTPUT_DIR / "deployment-bats-form.png")
    with page.expect_navigation():
        form.locator("button").click()
    deployment = project.deployments.get()
    assert (deployment.speed_factor, deployment.low_hz, deployment.high_hz) == (0.1, 15_000, 140_000)
    queue_ingest(deployment)
    pending = [RecordingStatus.QUEUED, RecordingStatus.EMBEDDING]
    wait_for(lambda: not Recording.objects.filter(deployment=deployment, status__in=pending).exists(), what="ingest")
    recording = Recording.objects.filter(deployment=deployment).order_by("filename").first()
    assert recording.status == RecordingStatus.DONE and recording.speed_factor == 0.1
    assert recording.windows.count() == 14  # 0.3 s windows of a 4.03 s file
    page.goto(f"/projects/{project.pk}/deployments/{deployment.pk}/")
    framing = page.inner_text(".framing")
    assert framing.endswith("heard at 0.1× speed: 0.3 s of the recordings each"), framing
    assert "the model hears 15000–140000 Hz" in page.inner_text("h1 + p")

    page.goto(f"/projects/{project.pk}/recordings/{recording.pk}/")
    page.evaluate("localStorage.setItem('recordingZoom', '0')")  # 5 s heard: half a second of the file
    page.reload()
    wait_until(page, "document.querySelector('.region-view img').naturalWidth > 0")
    assert page.inner_text("[data-zoom-label]") == "0.00–0.50 s"
    assert "time-expanded" in page.inner_text("h1 + p")
    ticks = page.locator("[data-time-axis] .tick").all_inner_texts()
    assert "0.1 s" in [tick.split("\n")[0] for tick in ticks], ticks
    assert page.locator(".hit").count() == 10  # 3 s of the file on a page: 30 s heard
    playing = "Number(document.querySelector('[data-region-view]').dataset.playing ?? -1)"
    page.keyboard.press("Shift+Space")
    wait_until(page, f"{playing} > 0.02")
    before = page.evaluate(playing)
    page.wait_for_timeout(1000)
    assert 0.05 <= page.evaluate(playing) - before <= 0.16
    page.keyboard.press("Shift+Space")
    _, label = drag_a_box(page)
    low, high = (float(edge) for edge in label.split(" · ")[1].removesuffix(" kHz").split("–"))
    assert low > 10 and 50 < high < 160, label  # ultrasound, in the file's kHz
    page.screenshot(path=OUTPUT_DIR / "recording-bats.png")
