"""Accounts: throttled log-in, password change and reset, API tokens."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import PROJECT_DIR

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_login_is_throttled_after_repeated_failures(make_user, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    make_user("ranger")
    client = Client()
    for _ in range(3):
        response = client.post("/accounts/login/", {"username": "ranger", "password": "wrong"})
        assert response.status_code == 200  # the form again, with an error
    locked = client.post("/accounts/login/", {"username": "ranger", "password": PASSWORD})
    assert locked.status_code == 429
    assert b"Too many failed log-ins" in locked.content
    assert "_auth_user_id" not in client.session  # the right password is not even checked
    cache.clear()
    assert client.post("/accounts/login/", {"username": "ranger", "password": PASSWORD}).status_code == 302


def test_password_change_and_reset(make_user):
    user = make_user("ranger")
    user.email = "ranger@example.org"
    user.save()
    client = Client()
    client.force_login(user)
    response = client.post(
        "/accounts/password_change/",
        {
            "old_password": PASSWORD,
            "new_password1": "an-even-longer-pass-99",
            "new_password2": "an-even-longer-pass-99",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("an-even-longer-pass-99")
    response = Client().post("/accounts/password_reset/", {"email": "ranger@example.org"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and "ranger" in mail.outbox[0].body


def test_api_tokens_for_scripts(make_user):
    make_user("script-user")
    client = APIClient()
    response = client.post("/api/token/", {"username": "script-user", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/projects/").status_code == 200
    assert client.post("/api/token/", {"username": "script-user", "password": "wrong"}).status_code == 400


def test_account_page_rotates_the_token(make_user):
    user = make_user("rotator")
    client = Client()
    client.force_login(user)
    client.post("/account/")
    first = user.auth_token.key
    client.post("/account/")
    user.refresh_from_db()
    assert user.auth_token.key != first
    assert first not in client.get("/account/").content.decode()


def test_basic_auth_is_not_accepted(make_user):
    make_user("basic")
    credentials = base64.b64encode(f"basic:{PASSWORD}".encode()).decode()
    response = Client().get("/api/projects/", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code in (401, 403)


def test_production_settings_pass_the_deploy_check():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_DEBUG"}
    env.update(DJANGO_SECRET_KEY="x" * 64 + "-unique-production-secret", DJANGO_ALLOWED_HOSTS="agile.example.org")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_DEBUG", "DJANGO_SECRET_KEY")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=PROJECT_DIR, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr
