"""Accounts: throttled log-in, password change and reset, API tokens."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from perch_agile import login_limits
from tests.conftest import PROJECT_DIR

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def fail(client, path, name, times, **extra):
    for _ in range(times):
        response = client.post(path, {"username": name, "password": "wrong"}, **extra)
        assert response.status_code in (200, 400), response.status_code  # the form again / DRF's 400


def test_login_is_refused_after_repeated_failures(make_user, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    make_user("ranger")
    client = Client()
    fail(client, "/accounts/login/", "ranger", 3)
    locked = client.post("/accounts/login/", {"username": "ranger", "password": PASSWORD})
    assert locked.status_code == 429
    assert b"Too many failed log-ins" in locked.content
    assert int(locked["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session  # the right password is not even checked
    cache.clear()
    assert client.post("/accounts/login/", {"username": "ranger", "password": PASSWORD}).status_code == 302


def test_token_endpoint_is_limited_whatever_forwarded_header_the_client_sends(make_user, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    make_user("victor")
    client = APIClient()
    for n in range(3):
        client.post("/api/token/", {"username": "victor", "password": "wrong"}, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    response = client.post(
        "/api/token/", {"username": "victor", "password": PASSWORD}, format="json", HTTP_X_FORWARDED_FOR="10.9.9.9"
    )
    assert response.status_code == 429
    assert "token" not in response.json() and "Too many" in response.json()["detail"]


def test_a_name_locked_on_the_page_is_locked_for_tokens_and_the_admin(make_user, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    admin = make_user("victor")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    fail(Client(), "/accounts/login/", "victor", 3)
    token = APIClient().post("/api/token/", {"username": "victor", "password": PASSWORD}, format="json")
    assert token.status_code == 429
    site_admin = Client()
    response = site_admin.post("/admin/login/", {"username": "victor", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 429
    assert "_auth_user_id" not in site_admin.session


def test_admin_login_failures_count_too(make_user, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    admin = make_user("root")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client = Client()
    fail(client, "/admin/login/", "root", 3)
    assert client.post("/admin/login/", {"username": "root", "password": PASSWORD}).status_code == 429


@pytest.mark.parametrize("variant", ["victor ", "\tvictor", "\uff56\uff49\uff43\uff54\uff4f\uff52", "VICTOR"])
def test_variants_of_a_locked_name_are_the_same_name(make_user, settings, variant):
    settings.LOGIN_FAILURE_LIMIT = 3
    make_user("victor")
    client = Client()
    fail(client, "/accounts/login/", "victor", 3)
    response = client.post("/accounts/login/", {"username": variant, "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_one_address_rotating_names_is_stopped(make_user, settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 5
    make_user("victor")
    client = Client()
    for n in range(5):
        fail(client, "/accounts/login/", f"guess{n}", 1)
    assert client.post("/accounts/login/", {"username": "victor", "password": PASSWORD}).status_code == 429
    # Another client is not affected.
    assert (
        Client(REMOTE_ADDR="192.0.2.7")
        .post("/accounts/login/", {"username": "victor", "password": PASSWORD})
        .status_code
        == 302
    )


def test_guesses_from_many_addresses_delay_a_name_but_never_lock_it(make_user, settings, monkeypatch):
    settings.LOGIN_FAILURE_LIMIT = 3
    make_user("victor")
    for n in range(3):
        fail(Client(REMOTE_ADDR=f"198.51.100.{n}"), "/accounts/login/", "victor", 1)
    owner = Client(REMOTE_ADDR="203.0.113.1")
    delayed = owner.post("/accounts/login/", {"username": "victor", "password": PASSWORD})
    assert delayed.status_code == 429
    assert 0 < int(delayed["Retry-After"]) <= settings.LOGIN_USER_DELAY_MAX_S
    later = time.time() + settings.LOGIN_USER_DELAY_MAX_S + 1
    monkeypatch.setattr(login_limits.time, "time", lambda: later)
    assert owner.post("/accounts/login/", {"username": "victor", "password": PASSWORD}).status_code == 302


def test_client_address_believes_only_the_trusted_proxies(rf, settings):
    request = rf.get("/", REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.20")
    settings.PERCH_AGILE_TRUSTED_PROXIES = 0
    assert login_limits.client_address(request) == "172.18.0.5"
    settings.PERCH_AGILE_TRUSTED_PROXIES = 1
    assert login_limits.client_address(request) == "198.51.100.20"  # what nginx saw; 1.2.3.4 is the client's say
    settings.PERCH_AGILE_TRUSTED_PROXIES = 3
    assert login_limits.client_address(request) == "172.18.0.5"


def test_password_reset_mails_are_limited(make_user, settings):
    user = make_user("ranger")
    user.email = "ranger@example.org"
    user.save()
    client = Client()
    answers = [client.post("/accounts/password_reset/", {"email": "ranger@example.org"}).status_code for _ in range(12)]
    assert answers.count(302) == settings.PASSWORD_RESET_EMAIL_LIMIT
    assert answers[-1] == 429
    assert len(mail.outbox) == settings.PASSWORD_RESET_EMAIL_LIMIT


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
