"""The first hour in a real browser: bringing a colleague in with a link, filters that
take minutes, inputs whose hints can be read. Debian's Chromium, headless.

Screenshots land in test-output/ for a person to look at.
"""

from __future__ import annotations

import re

import pytest

from annotations.models import Membership, Role, SearchRecord, Window
from tests.conftest import OUTPUT_DIR
from tests.test_browser import CHROMIUM, browser, log_in, page  # noqa: F401 (fixtures)
from tests.test_workspace_browser import planted  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (bash run.sh test installs it)"),
]

# Inputs whose placeholder is wider than the box that shows it, on the current page.
CUT_OFF_PLACEHOLDERS = """[...document.querySelectorAll('input[placeholder]')].filter((input) => {
  if (!input.offsetParent) return false;
  const style = getComputedStyle(input);
  const context = document.createElement('canvas').getContext('2d');
  context.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return context.measureText(input.placeholder).width > room + 1;
}).map((input) => `${input.name}: ${input.placeholder}`)"""


def logged_in(tab) -> None:
    log_in(tab, "annotator")
    tab.get_by_role("heading", name="Projects").wait_for()


def in_view(locator, height: int) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def test_an_admin_makes_a_link_and_a_newcomer_joins_through_it(browser, page, planted, live_server):  # noqa: F811
    project, _, _ = planted
    logged_in(page)
    for width, role in ((1366, "Viewer"), (800, "Annotator")):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"/projects/{project.pk}/settings/")
        form = page.locator("form", has=page.get_by_role("button", name="Create link"))
        form.get_by_role("combobox").first.select_option(label=role)
        form.get_by_role("button", name="Create link").click()
        link = page.get_by_role("textbox", name="Invitation link")
        link.wait_for()
        message = form.locator(".form-message")
        assert f"join as {role.lower()}" in message.inner_text() and "shown only now" in message.inner_text()
        assert in_view(link, 800) and in_view(message, 800), width  # beside the button, not a screen away
        page.screenshot(path=OUTPUT_DIR / f"invitation-link-{width}.png")
        url = link.input_value()
        assert re.fullmatch(rf"{live_server.url}/join/[\w-]{{40,}}/", url), url

        newcomer = browser.new_context(viewport={"width": width, "height": 800})
        tab = newcomer.new_page()
        tab.goto(url)
        name = f"newcomer{width}"
        tab.get_by_label("User name").fill(name)
        tab.get_by_label("Password", exact=True).fill("reed-bed-at-dawn")
        tab.get_by_label("Password again").fill("reed-bed-at-dusk")
        tab.get_by_role("button", name="Create account and join").click()
        assert "differ" in tab.get_by_role("alert").inner_text() and in_view(tab.get_by_role("alert"), 800)
        tab.get_by_label("Password", exact=True).fill("reed-bed-at-dawn")
        tab.get_by_label("Password again").fill("reed-bed-at-dawn")
        tab.get_by_role("button", name="Create account and join").click()
        tab.wait_for_url(re.compile(rf"/projects/{project.pk}/$"))
        assert f"you joined as {role.lower()}" in tab.content()
        tab.screenshot(path=OUTPUT_DIR / f"joined-{width}.png")
        newcomer.close()
        assert Membership.objects.get(project=project, user__username=name).role == Role[role.upper()]
    page.reload()
    assert page.get_by_text("Links not yet used").count() == 0  # both were used


def test_the_search_filter_takes_minutes(page, planted):  # noqa: F811
    project, _, _ = planted
    logged_in(page)
    example = Window.objects.filter(recording__deployment__project=project).order_by("pk").first()
    page.goto(f"/projects/{project.pk}/search/?window={example.pk}")
    page.get_by_label("from (local time)").fill("04:30")
    page.get_by_label("to (local time; empty: midnight)").fill("05:00")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"history="))
    record = SearchRecord.objects.latest("pk")
    assert (record.hour_from, record.hour_to) == (4.5, 5.0)
    # The recordings start at 05:00 UTC (the deployment's zone): nothing between 04:30 and 05:00.
    assert page.locator("ol.hits .hit").count() == 0
    assert page.get_by_label("from (local time)").input_value() == "04:30"
    assert "04:30–05:00 local" in page.content()


def test_no_placeholder_is_cut_off(page, planted):  # noqa: F811
    project, deployment, _ = planted
    logged_in(page)
    example = Window.objects.filter(recording__deployment=deployment).order_by("pk").first()
    pages = [
        f"/projects/{project.pk}/",
        f"/projects/{project.pk}/settings/",
        f"/projects/{project.pk}/deployments/{deployment.pk}/",
        f"/projects/{project.pk}/search/?window={example.pk}",
        f"/projects/{project.pk}/recordings/{example.recording_id}/",
        "/",
    ]
    cut_off = []
    for width in (1366, 800):
        page.set_viewport_size({"width": width, "height": 900})
        for url in pages:
            page.goto(url)
            cut_off += [(width, url, input) for input in page.evaluate(CUT_OFF_PLACEHOLDERS)]
    assert cut_off == [], "\n".join(map(str, cut_off))


def test_labeling_far_down_a_list_answers_where_the_person_is(page, planted):  # noqa: F811
    project, _, _ = planted
    logged_in(page)
    example = Window.objects.filter(recording__deployment__project=project).order_by("pk").first()
    for width in (1366, 800):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"/projects/{project.pk}/search/?window={example.pk}&all_overlapping=1")
        page.wait_for_selector(".hit.current")
        page.evaluate("focusHit(hits().length - 2)")  # far down the list, a long scroll below the top
        last = page.locator(".hit").nth(-2)
        assert page.evaluate("window.scrollY") > 800
        page.keyboard.press("1")
        last.locator("xpath=self::*[@data-labeled='positive']").wait_for()
        status = page.locator("#flash")
        assert "saved" in status.inner_text() and in_view(status, 800), width
        page.screenshot(path=OUTPUT_DIR / f"labeled-far-down-{width}.png")
        page.keyboard.press("u")  # undone, for the next width
        page.wait_for_selector(".hit[data-labeled='positive']", state="detached")
