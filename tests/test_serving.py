"""How the app is served: nginx in front of gunicorn as in docker-compose.yml, and the
headers every response carries.

The serving tests start the real stack on loopback ports: gunicorn's sync workers on the
test database, and Debian's nginx with perch_agile/deploy/nginx.conf.template rendered
the way the official nginx image renders it.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from perch_agile.headers import CONTENT_SECURITY_POLICY
from tests.conftest import OUTPUT_DIR, PROJECT_DIR, _database_url, wait_for

pytestmark = pytest.mark.django_db

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
TEMPLATE = PROJECT_DIR / "perch_agile" / "deploy" / "nginx.conf.template"
GUNICORN_WORKERS = 2  # as many slow clients as workers stall bare gunicorn
SLOW_CLIENTS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port: int, method: str, path: str, timeout: float = 10, **request) -> tuple[http.client.HTTPResponse, str]:
    """One request to 127.0.0.1:``port``; the response and its body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, **request)
        response = conn.getresponse()
        return response, response.read().decode()
    finally:
        conn.close()


def answers(port: int) -> bool:
    try:
        return fetch(port, "GET", "/accounts/login/", timeout=5)[0].status == 200
    except (OSError, http.client.HTTPException):
        return False


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def render_nginx_conf(folder: Path, port: int, upstream_port: int, static_root: Path) -> Path:
    """The template rendered as the nginx image's envsubst does (only PERCH_AGILE_*
    variables), included from a main file like the image's own nginx.conf."""
    values = {
        "PERCH_AGILE_LISTEN": f"127.0.0.1:{port}",
        "PERCH_AGILE_UPSTREAM": f"127.0.0.1:{upstream_port}",
        "PERCH_AGILE_STATIC_ROOT": str(static_root),
    }
    site = folder / "perch_agile.conf"
    site.write_text(re.sub(r"\$\{(PERCH_AGILE_\w+)\}", lambda m: values[m[1]], TEMPLATE.read_text()))
    temp_paths = "\n".join(
        f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = folder / "nginx.conf"
    main.write_text(
        f"""
        {"user root;" if os.geteuid() == 0 else ""}
        daemon off;
        worker_processes 1;
        pid {folder / "nginx.pid"};
        error_log {folder / "error.log"};
        events {{ worker_connections 256; }}
        http {{
            include /etc/nginx/mime.types;
            access_log {folder / "access.log"};
            {temp_paths}
            include {site};
        }}
        """
    )
    return main


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, django_db_blocker):
    """gunicorn as docker-compose.yml runs it (sync workers), on the test database; its port."""
    port = free_port()
    with django_db_blocker.unblock():
        database = _database_url(connection.settings_dict)
    env = {**os.environ, "DATABASE_URL": database, "PERCH_AGILE_TRUSTED_PROXIES": "1"}
    OUTPUT_DIR.mkdir(exist_ok=True)
    with open(OUTPUT_DIR / "gunicorn.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "perch_agile.wsgi", "--bind", f"127.0.0.1:{port}"]
            + ["--workers", str(GUNICORN_WORKERS), "--timeout", "120"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: answers(port), timeout=60, what="gunicorn")
    yield port
    stop(process)


@pytest.fixture(scope="module")
def nginx(gunicorn, tmp_path_factory):
    """nginx with the deployment's config in front of ``gunicorn``; its port."""
    if NGINX is None:
        pytest.skip("nginx is not installed (bash run.sh test installs it)")
    folder = tmp_path_factory.mktemp("nginx")
    static_root = folder / "static"
    with override_settings(STATIC_ROOT=static_root):
        call_command("collectstatic", interactive=False, verbosity=0)
    port = free_port()
    conf = render_nginx_conf(folder, port, gunicorn, static_root)
    process = subprocess.Popen([NGINX, "-c", str(conf), "-e", str(folder / "error.log")])
    wait_for(lambda: answers(port), timeout=30, what="nginx")
    yield port
    stop(process)


def start_slow_clients(port: int) -> list[socket.socket]:
    """Clients that announce a 1 MB form and send 10 bytes of it. The CSRF cookie makes
    Django read the body (without it Django refuses before reading)."""
    head = (
        "POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: csrftoken={'a' * 32}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 1000000\r\n\r\n"
    )
    clients = []
    for _ in range(SLOW_CLIENTS):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(head.encode() + b"username=a")
        clients.append(client)
    time.sleep(0.5)  # the server has taken them in
    return clients


def timed_login_page(port: int, timeout: float = 10) -> float:
    """Seconds until the whole login page has arrived."""
    started = time.monotonic()
    assert fetch(port, "GET", "/accounts/login/", timeout=timeout)[0].status == 200
    return time.monotonic() - started


def record(line: str) -> None:
    OUTPUT_DIR.mkdir(exist_ok=True)
    with open(OUTPUT_DIR / "serving.txt", "a") as out:
        out.write(line + "\n")


def test_slow_clients_do_not_delay_other_requests_behind_nginx(nginx):
    # Every worker loads the page once first: requests sent one after another may all reach
    # the same sync worker, and another's first page (templates, a connection) takes seconds.
    with concurrent.futures.ThreadPoolExecutor(GUNICORN_WORKERS) as pool:
        for _ in range(3):
            list(pool.map(lambda _: timed_login_page(nginx), range(GUNICORN_WORKERS)))
    alone = timed_login_page(nginx)
    clients = start_slow_clients(nginx)
    try:
        beside_slow = timed_login_page(nginx)
    finally:
        for client in clients:
            client.close()
    record(f"nginx: login page alone {alone:.3f} s, beside {SLOW_CLIENTS} slow-body clients {beside_slow:.3f} s")
    assert beside_slow - alone < 1


def test_bare_sync_gunicorn_is_stalled_by_the_same_clients(gunicorn):
    """Why the proxy is there: each slow client holds a sync worker until it gives up."""
    alone = timed_login_page(gunicorn)
    clients = start_slow_clients(gunicorn)
    try:
        with pytest.raises(TimeoutError):
            timed_login_page(gunicorn, timeout=3)
    finally:
        for client in clients:
            client.close()
    after = timed_login_page(gunicorn)  # the workers are free again once the clients go
    record(f"bare gunicorn: login page alone {alone:.3f} s, beside {SLOW_CLIENTS} slow-body clients > 3 s (timed out)")
    assert after < 1


def test_nginx_serves_static_files_and_refuses_oversized_bodies_itself(nginx):
    static, _ = fetch(nginx, "GET", "/static/frontend/app.js")
    assert static.status == 200 and static.headers["Cache-Control"] == "max-age=3600"  # nginx's, not the app's
    announce = "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", nginx)) as client:
        client.sendall(announce.format("/accounts/login/").encode())
        assert client.recv(100).startswith(b"HTTP/1.1 413")
    with socket.create_connection(("127.0.0.1", nginx), timeout=1) as client:  # bulk uploads may be larger
        client.sendall(announce.format("/api/projects/1/deployments/1/files/").encode())
        with pytest.raises(TimeoutError):
            client.recv(100)  # nginx waits for the body


@pytest.mark.django_db(transaction=True)
def test_a_browser_logs_in_through_nginx(nginx, make_user):
    """CSRF's origin check sees the port the browser used (nginx passes Host on whole)."""
    make_user("walker")
    response, page = fetch(nginx, "GET", "/accounts/login/")
    cookie = SimpleCookie(response.headers["Set-Cookie"])["csrftoken"].OutputString(attrs=[])
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    form = urlencode({"username": "walker", "password": "a-long-test-password", "csrfmiddlewaretoken": token})
    headers = {
        "Cookie": cookie,
        "Origin": f"http://127.0.0.1:{nginx}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    response, _ = fetch(nginx, "POST", "/accounts/login/", body=form, headers=headers)
    assert response.status == 302
    assert any(c.startswith("sessionid=") for c in response.headers.get_all("Set-Cookie"))


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


def test_the_api_address_leads_to_its_reference_linked_from_every_page(client, make_user):
    client.force_login(make_user("reader"))
    response = client.get("/api/")
    assert response.status_code == 302 and response.headers["Location"] == "/api/docs/"
    assert 'href="/api/docs/">API reference</a>' in client.get("/").content.decode()


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
