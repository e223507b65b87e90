"""What production's containers rely on, checked without Docker (``tests/test_compose.py``
runs the stack itself): the health endpoint, settings from a plain database URL, and a
compose file that publishes only nginx, keeps no default secret and names its base images
by variables."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.db import OperationalError

from perch_agile import health

PROJECT_DIR = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_healthz_answers_before_the_host_check(client, settings):
    settings.ALLOWED_HOSTS = ["agile.example.org"]
    assert client.get("/accounts/login/", HTTP_HOST="127.0.0.1:8000").status_code == 400
    response = client.get("/healthz", HTTP_HOST="127.0.0.1:8000")
    assert response.status_code == 200 and response.content == b"ok\n"


@pytest.mark.django_db
def test_healthz_says_when_the_database_is_unreachable(client, monkeypatch):
    def unreachable():
        raise OperationalError("connection refused")

    monkeypatch.setattr(health.connection, "cursor", unreachable)
    response = client.get("/healthz")
    assert response.status_code == 503 and b"database unreachable" in response.content


def test_a_database_url_without_options_configures_django():
    """Compose gives ``postgresql://user:password@db:5432/name``: no query string."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_DEBUG"},
        "DATABASE_URL": "postgresql://perch:secret@db:5432/perch_agile",
        "DJANGO_SECRET_KEY": "x" * 64,
    }
    code = "from django.conf import settings; d = settings.DATABASES['default']; print(d['HOST'], d['NAME'])"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=PROJECT_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "perch_agile.settings"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["db", "perch_agile"]


def compose_file(name: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((PROJECT_DIR / name).read_text())


def test_compose_publishes_only_nginx_and_has_no_default_secret():
    services = compose_file()["services"]
    assert [name for name, service in services.items() if "ports" in service] == ["proxy"]
    text = (PROJECT_DIR / "docker-compose.yml").read_text()
    for secret in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses and all(use.startswith(":?") for use in uses if use), (secret, uses)
    assert all("healthcheck" in services[name] for name in ("db", "redis", "web", "worker"))
    assert "deploy" not in services["worker"]  # a CPU worker unless docker-compose.gpu.yml is added
    gpu = compose_file("docker-compose.gpu.yml")["services"]["worker"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_every_base_image_is_a_variable_defaulting_to_the_official_one():
    services = compose_file()["services"]
    assert services["db"]["image"] == "${PG_IMAGE:-pgvector/pgvector:pg17}"
    assert services["redis"]["image"] == "${REDIS_IMAGE:-redis:7-alpine}"
    dockerfile = (PROJECT_DIR / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in dockerfile and "FROM ${PYTHON_IMAGE} AS app" in dockerfile
    assert "ARG NGINX_IMAGE=nginx:1.28-alpine" in dockerfile and "FROM ${NGINX_IMAGE} AS proxy" in dockerfile
    assert re.search(r"^USER perch$", dockerfile, re.MULTILINE)
