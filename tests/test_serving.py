"""Headers every response carries."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from perch_agile.headers import CONTENT_SECURITY_POLICY
from tests.conftest import PROJECT_DIR

pytestmark = pytest.mark.django_db


def test_pages_and_the_api_send_a_policy_without_inline_script(client, make_user):
    client.force_login(make_user("reader"))
    for path in ["/accounts/login/", "/", "/account/", "/api/projects/"]:
        policy = client.get(path).headers["Content-Security-Policy"]
        assert policy == CONTENT_SECURITY_POLICY
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"


def test_no_template_holds_inline_script_or_style():
    inline = re.compile(r"<script(?![^>]*\ssrc=)(?![^>]*application/json)|\son[a-z]+=|javascript:|\sstyle=|<style")
    templates = list((PROJECT_DIR / "frontend" / "templates").rglob("*.html"))
    assert templates
    assert [(t.name, m[0]) for t in templates for m in inline.finditer(t.read_text())] == []


def test_the_account_page_is_never_cached(client, make_user):
    client.force_login(make_user("reader"))
    assert "no-store" in client.get("/account/").headers["Cache-Control"]


PRODUCTION_PROXY_SETTINGS = (
    "import perch_agile.settings as s; "
    "print(getattr(s, 'SECURE_PROXY_SSL_HEADER', None) is not None, s.REST_FRAMEWORK['NUM_PROXIES'])"
)


@pytest.mark.parametrize(("proxies", "trusted"), [("0", False), ("1", True)])
def test_the_forwarded_scheme_is_trusted_only_behind_a_proxy(proxies, trusted):
    """Production settings (DJANGO_DEBUG=0), read in a fresh interpreter."""
    env = {**os.environ, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50, "PERCH_AGILE_TRUSTED_PROXIES": proxies}
    command = [sys.executable, "-c", PRODUCTION_PROXY_SETTINGS]
    out = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(trusted), proxies]
