"""Production for real: ``docker compose up`` built, started and used through nginx only.

Run by ``bash run.sh compose-test`` (README, "Production"), not by the default suite: it
builds the images and takes about a quarter of an hour. That command installs Docker
where it is missing, starts the engine, and where no registry answers builds stand-in
base images from Debian's archive (``perch_agile/deploy/standins``); it passes the
compose command and the base images here through the environment.

The steps depend on each other and run in order on one stack: what a person sees
through nginx (log in, upload real audio in chunks, search, label, train, run, the CSV),
three workers sharing a deployment, a worker on another host, a restart that keeps
everything. Figures (image sizes, time to the first page, embedding throughput against
the bare model in the same run) go to ``test-output/compose.txt``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile

from tests.conftest import wait_for

PROJECT_DIR = Path(__file__).resolve().parent.parent
COMPOSE_COMMAND = os.environ.get("PERCH_AGILE_COMPOSE", "")
pytestmark = pytest.mark.skipif(
    not COMPOSE_COMMAND, reason="bash run.sh compose-test runs these (they build images and take ~15 minutes)"
)

WORK = PROJECT_DIR / "var" / "compose-test"
SHARED = WORK / "shared"  # the shared filesystem every host mounts (NFS in a lab)
APP_UID = 10001  # the Dockerfile's app user, the same on every host
PORT, DB_PORT, REDIS_PORT = 18080, 15432, 16379
BASE_URL = f"http://localhost:{PORT}"
MAIN_FILES = ("docker-compose.yml", "docker-compose.publish.yml")
BASE_IMAGES = ("PYTHON_IMAGE", "PG_IMAGE", "REDIS_IMAGE", "NGINX_IMAGE")
PASSWORD = "a-long-compose-test-password"
LONG_FILES = 6  # of five minutes: 600 windows, some 30 s of the model's time on 2 cores
FIGURES: dict[str, str] = {}


class Compose:
    """One compose project: ``compose("ps")`` runs ``docker compose … ps`` in the repository."""

    def __init__(self, project: str, env: dict[str, str], files=MAIN_FILES):
        self.project = project
        self.env_file = WORK / f"{project}.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        self.files = files

    def __call__(self, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
        command = [*shlex.split(COMPOSE_COMMAND), "--env-file", str(self.env_file), "-p", self.project]
        for name in self.files:
            command += ["-f", name]
        result = subprocess.run(
            [*command, *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode:
            raise AssertionError(f"{shlex.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def run_in(self, service: str, *command: str, env: dict[str, str] | None = None) -> str:
        flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
        return self("exec", "-T", *flags, service, *command).stdout

    def sql(self, query: str) -> str:
        return self.run_in("db", "psql", "-U", "perch", "-d", "perch_agile", "-Atc", query).strip()

    def containers(self, service: str) -> list[str]:
        return self("ps", "-q", service).stdout.split()

    def workers_answering(self) -> int:
        """Celery workers that answer a ping through the broker, as the web container sees it."""
        result = self(
            "exec", "-T", "web", "celery", "-A", "perch_agile", "inspect", "ping", "--timeout", "5", check=False
        )
        return result.stdout.count("pong")


def host_address() -> str:
    """This machine's address on its network: what a worker on another host would dial."""
    route = subprocess.run(["ip", "-o", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=True).stdout
    return route.split(" src ")[1].split()[0]


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def recordings_embedded_by(container: str) -> int:
    """Recordings a worker container embedded, from its log (workers/ingest.py says each)."""
    log = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=True)
    return sum("windows done" in line and "recording " in line for line in (log.stdout + log.stderr).splitlines())


def record(name: str, value: str) -> None:
    FIGURES[name] = value
    out = PROJECT_DIR / "test-output"
    out.mkdir(exist_ok=True)
    (out / "compose.txt").write_text("".join(f"{k}: {v}\n" for k, v in FIGURES.items()))


class Api:
    """A logged-in browser session through nginx: cookies, and the CSRF header on writes."""

    def __init__(self, username: str, password: str):
        self.session = requests.Session()
        login = self.session.get(f"{BASE_URL}/accounts/login/")
        assert login.status_code == 200 and "csrftoken" in self.session.cookies
        answer = self.session.post(
            f"{BASE_URL}/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": self.session.cookies["csrftoken"]},
        )
        assert answer.status_code == 200 and "/accounts/login/" not in answer.url, answer.text[:500]

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-CSRFToken": self.session.cookies.get("csrftoken", ""), **kwargs.pop("headers", {})}
        return self.session.request(method, f"{BASE_URL}{path}", headers=headers, timeout=120, **kwargs)

    def json(self, method: str, path: str, expect: int = 200, **kwargs):
        response = self(method, path, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json()


@pytest.fixture(scope="module")
def demo_audio():
    """The demo's real audio (great tit and finch soundscapes, storm-petrels, birdsong) on
    the shared filesystem, and which 3 s slots of each soundscape hold great tit song."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "perch_agile.settings")
    django.setup()
    from django.conf import settings

    from annotations.demo import SLOT_S, build_demo_audio

    folder = SHARED / "audio" / "demo"
    audio = build_demo_audio(folder, settings.VAR_DIR / "cache")
    great_tit_slots = {
        name: {int(p.start_s // SLOT_S) for p in placed if p.label == "great tit"}
        for name, placed in audio.placed.items()
    }
    soundscapes = sorted(folder.glob("2024*.wav"))
    # For throughput, files of the length recorders write, each five soundscapes end to end.
    longer = SHARED / "audio" / "long"
    longer.mkdir(parents=True, exist_ok=True)
    clips = [soundfile.read(str(path), dtype="int16") for path in soundscapes]
    long_files = []
    for index in range(LONG_FILES):
        path = longer / f"dawn_{index}.wav"
        chosen = [clips[(index + i) % len(clips)] for i in range(5)]
        soundfile.write(str(path), np.concatenate([audio for audio, _ in chosen]), chosen[0][1], subtype="PCM_16")
        long_files.append(path)
    return {
        "folder": folder,
        "soundscapes": soundscapes,
        "great_tit_slots": great_tit_slots,
        "long_files": long_files,
    }


@pytest.fixture(scope="module")
def stack(demo_audio):
    for folder in (SHARED / "media", SHARED / "audio"):
        folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chown", "-R", str(APP_UID), str(SHARED)], check=True)
    secrets_env = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "REDIS_PASSWORD": secrets.token_hex(16),
    }
    common = {
        **{name: os.environ[name] for name in BASE_IMAGES if os.environ.get(name)},
        **secrets_env,
        "MEDIA_DIR": str(SHARED / "media"),
        "AUDIO_DIR": str(SHARED / "audio"),
        # A test machine: no TLS in front, a small database.
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "PG_SHARED_BUFFERS": "512MB",
        "PG_EFFECTIVE_CACHE_SIZE": "2GB",
        "PG_MAINTENANCE_WORK_MEM": "512MB",
        "PG_MAX_PARALLEL_MAINTENANCE_WORKERS": "1",
        "PG_SHM_SIZE": "1g",
    }
    standby_url = f"postgresql://perch:{secrets_env['POSTGRES_PASSWORD']}@standby:5432/perch_agile"
    main = Compose(
        "perch-compose-test",
        {
            **common,
            "PORT": str(PORT),
            "DB_PUBLISH": str(DB_PORT),
            "REDIS_PUBLISH": str(REDIS_PORT),
            "COMPOSE_PROFILES": "standby",  # a hot standby serves the searches
            "PERCH_AGILE_REPLICA_URLS": standby_url,
        },
    )
    address = host_address()
    remote = Compose(
        "perch-compose-test-remote",
        {**common, "DB_HOST": address, "DB_PORT": str(DB_PORT), "REDIS_HOST": address, "REDIS_PORT": str(REDIS_PORT)},
        files=("docker-compose.yml",),
    )
    for project in (remote, main):
        project("down", "-v", "--remove-orphans", check=False)
    built = time.monotonic()
    main("build")
    record("images built in", f"{time.monotonic() - built:.0f} s (cached layers count)")
    for image in ("perch-agile:latest", "perch-agile-proxy:latest"):
        size = int(docker("image", "inspect", "--format", "{{.Size}}", image))
        record(f"image {image}", f"{size / 1e9:.2f} GB")
    started = time.monotonic()
    main("up", "-d")

    def first_page():
        try:
            return requests.get(f"{BASE_URL}/accounts/login/", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(first_page, timeout=600, interval=0.5, what="the login page through nginx")
    record("docker compose up to the first page", f"{time.monotonic() - started:.1f} s")
    main.run_in(
        "web",
        "python",
        "manage.py",
        "createsuperuser",
        "--noinput",
        "--username=ecologist",
        "--email=ecologist@example.org",
        env={"DJANGO_SUPERUSER_PASSWORD": PASSWORD},
    )
    yield {"main": main, "remote": remote, "state": {}}
    for project in (remote, main):
        project("logs", "--no-color", check=False)  # kept by pytest's output on failure
        project("down", "-v", "--remove-orphans", check=False)
    shutil.rmtree(SHARED, ignore_errors=True)


def upload(api: Api, base: str, deployment_id: int, path: Path, chunk: int = 1 << 20) -> None:
    """A browser's resumable upload: open the session, PUT each chunk at the offset the
    server confirmed."""
    data = path.read_bytes()
    url = f"{base}/deployments/{deployment_id}/uploads/"
    session = api.json("POST", url, json={"filename": path.name, "size_bytes": len(data)})
    offset = session["received_bytes"]
    while offset < len(data):
        answer = api.json(
            "PUT",
            f"{url}{session['id']}/",
            data=data[offset : offset + chunk],
            headers={"Content-Type": "application/octet-stream", "Upload-Offset": str(offset)},
        )
        offset = answer["received_bytes"]
    assert answer["recording"], answer


def queue_ingest(api: Api, base: str, deployment_id: int, files: int) -> None:
    assert api.json("POST", f"{base}/deployments/{deployment_id}/ingest/", 202) == {"queued": files}


def finished_ingest(api: Api, base: str, deployment_id: int, timeout: float = 900) -> dict:
    """Wait until none of the deployment's files is queued or embedding; its final progress."""

    def finished():
        progress = api.json("GET", f"{base}/deployments/{deployment_id}/")["progress"]
        return progress if progress["files_queued"] + progress["files_embedding"] == 0 else None

    return wait_for(finished, timeout=timeout, interval=1, what="ingest")


def ingest(api: Api, base: str, deployment_id: int, files: int) -> tuple[dict, float]:
    """Queue the deployment's ingest and wait for it; its final progress and the seconds taken."""
    started = time.monotonic()
    queue_ingest(api, base, deployment_id, files)
    progress = finished_ingest(api, base, deployment_id)
    return progress, time.monotonic() - started


def ingest_windows_per_s(api: Api, base: str, files: list[Path], name: str) -> float:
    """A new deployment of ``files``, uploaded, then embedded: windows/s from queue to done."""
    deployment = api.json("POST", f"{base}/deployments/", 201, json={"name": name})
    for path in files:
        upload(api, base, deployment["id"], path)
    progress, seconds = ingest(api, base, deployment["id"], len(files))
    assert progress["files_done"] == len(files)
    return progress["windows"] / seconds


def poll_done(api: Api, path: str, what: str) -> dict:
    state = wait_for(
        lambda: (s := api.json("GET", path))["status"] in ("done", "failed") and s, timeout=600, interval=1, what=what
    )
    assert state["status"] == "done", state
    return state


def windows_written_once(compose: Compose, deployment_id: int) -> tuple[int, int]:
    """The deployment's windows, and how many distinct (recording, start) they cover."""
    rows = compose.sql(
        "SELECT count(*), count(DISTINCT (recording_id, start_s)) FROM annotations_window "
        f"WHERE deployment_id = {int(deployment_id)}"
    )
    total, distinct = map(int, rows.split("|"))
    return total, distinct


def bare_model_windows_per_s(compose: Compose, files: list[Path]) -> float:
    """The model alone in a worker container, on the same audio (bench/bare_model.py)."""
    paths = [f"/data/audio/{path.relative_to(SHARED / 'audio')}" for path in files]
    output = compose.run_in("worker", "python", "-m", "bench.bare_model", *paths)
    return json.loads(output.strip().splitlines()[-1])["windows_per_s"]


def test_the_stack_starts_safe(stack):
    main = stack["main"]
    services = {
        json.loads(line)["Service"]: json.loads(line) for line in main("ps", "--format", "json").stdout.splitlines()
    }
    assert set(services) == {"db", "redis", "web", "worker", "proxy", "standby"}
    wait_for(
        lambda: all(
            json.loads(line)["Health"] in ("healthy", "") for line in main("ps", "--format", "json").stdout.splitlines()
        ),
        timeout=300,
        interval=2,
        what="every healthcheck to pass",
    )
    health = {
        json.loads(line)["Service"]: json.loads(line)["Health"]
        for line in main("ps", "--format", "json").stdout.splitlines()
    }
    assert {health[name] for name in ("web", "worker", "db", "redis", "standby")} == {"healthy"}
    # The app runs as its own user, and the production settings pass Django's deploy check
    # inside the image (with HTTPS on, as the file's defaults have it).
    for service in ("web", "worker"):
        assert main.run_in(service, "id", "-u").strip() == str(APP_UID)
    deploy_check = main.run_in(
        "web",
        "python",
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={"DJANGO_SECURE_SSL_REDIRECT": "1"},
    )
    assert "no issues" in deploy_check
    # The compose file alone publishes nginx only, and refuses to start without secrets.
    alone = Compose(
        "perch-compose-config",
        {"DJANGO_SECRET_KEY": "x", "POSTGRES_PASSWORD": "x", "REDIS_PASSWORD": "x"},
        files=("docker-compose.yml",),
    )
    config = json.loads(alone("config", "--format", "json").stdout)
    assert {name for name, service in config["services"].items() if service.get("ports")} == {"proxy"}
    assert "devices" not in json.dumps(config["services"]["worker"])  # a CPU worker by default
    unset = Compose("perch-compose-config", {"DJANGO_SECRET_KEY": "x"}, files=("docker-compose.yml",))
    refused = unset("config", check=False)
    assert refused.returncode != 0 and "is missing a value: set" in refused.stderr
    gpu = Compose(
        "perch-compose-config",
        {"DJANGO_SECRET_KEY": "x", "POSTGRES_PASSWORD": "x", "REDIS_PASSWORD": "x"},
        files=("docker-compose.yml", "docker-compose.gpu.yml"),
    )
    worker = json.loads(gpu("config", "--format", "json").stdout)["services"]["worker"]
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert worker["build"]["args"]["TF_PACKAGE"] == "tensorflow[and-cuda]==2.21.0"
    # Static files from nginx, the API reference through it, logs on stdout.
    assert requests.get(f"{BASE_URL}/static/frontend/app.js", timeout=10).status_code == 200
    assert "gunicorn" not in requests.get(f"{BASE_URL}/static/frontend/app.js", timeout=10).headers.get("Server", "")
    assert requests.get(f"{BASE_URL}/healthz", timeout=10).text == "ok\n"
    assert '"GET /accounts/login/ HTTP/1.0" 200' in main("logs", "web").stdout
    assert "ready." in main("logs", "worker").stdout


def test_the_loop_through_nginx(stack, demo_audio):
    main, state = stack["main"], stack["state"]
    api = Api("ecologist", PASSWORD)
    assert api("GET", "/api/docs/").status_code == 200
    project = api.json("POST", "/api/projects/", 201, json={"name": "Compose woodland", "labels": ["great tit"]})
    base = f"/api/projects/{project['id']}"
    deployment = api.json(
        "POST",
        f"{base}/deployments/",
        201,
        json={
            "name": "Uploads",
            "site": "Wytham Woods",
            "latitude": 51.7743,
            "longitude": -1.338,
            "timezone": "Europe/London",
        },
    )
    soundscapes = demo_audio["soundscapes"]
    for path in soundscapes:
        upload(api, base, deployment["id"], path)
    progress, _ = ingest(api, base, deployment["id"], len(soundscapes))
    assert progress["files_done"] == len(soundscapes) and progress["files_failed"] == 0
    assert progress["windows"] == 20 * len(soundscapes)  # one minute each, 3 s windows
    assert windows_written_once(main, deployment["id"]) == (progress["windows"], progress["windows"])
    state.update(api=api, base=base, project=project)

    recordings = {r["filename"]: r for r in api.json("GET", f"{base}/deployments/{deployment['id']}/recordings/")}
    windows = {name: api.json("GET", f"{base}/recordings/{r['id']}/windows/") for name, r in recordings.items()}
    song = demo_audio["great_tit_slots"]

    def is_song(window_id: int) -> bool:
        return any(
            w["id"] == window_id and i in song.get(name, ()) for name, ws in windows.items() for i, w in enumerate(ws)
        )

    # Search by example: a great tit song window of the first soundscape finds others.
    first = soundscapes[0].name
    query = windows[first][min(song[first])]["id"]
    hits = api.json("POST", f"{base}/search/", json={"window_id": query, "k": 10})["hits"]
    assert len(hits) == 10 and query not in [h["window_id"] for h in hits]
    assert sum(is_song(h["window_id"]) for h in hits[:5]) >= 3, hits
    # The hot standby answers searches once it has replayed this user's writes; stopped,
    # it is skipped and the primary answers, with no error.
    search_body = {"window_id": query, "k": 10}
    served = wait_for(
        lambda: (answer := api.json("POST", f"{base}/search/", json=search_body))["standby"] and answer,
        timeout=60,
        what="a search answered by the standby",
    )
    assert served["hits"] == hits
    main("stop", "standby")
    unserved = api.json("POST", f"{base}/search/", json=search_body)
    assert unserved["standby"] is False and unserved["hits"] == hits
    main("start", "standby")

    # Label four soundscapes (both birds) slot by slot, train, run, export.
    label_id = api.json("GET", f"{base}/labels/")[0]["id"]
    labeled = {s.name for s in soundscapes[:4]}
    for name in labeled:
        for value, chosen in (("positive", True), ("negative", False)):
            ids = [w["id"] for i, w in enumerate(windows[name]) if (i in song[name]) == chosen]
            api.json("POST", f"{base}/annotations/bulk/", json={"windows": ids, "label": label_id, "value": value})
    classifier = api.json("POST", f"{base}/classifiers/", 202, json={"labels": [label_id]})
    classifier = poll_done(api, f"{base}/classifiers/{classifier['id']}/", "training")
    output = classifier["outputs"][0]
    assert output["roc_auc"] is not None and output["roc_auc"] > 0.8, classifier
    run = api.json(
        "POST",
        f"{base}/classifiers/{classifier['id']}/runs/",
        202,
        json={"deployment": deployment["id"], "threshold": 0.0},  # every window, ranked
    )
    run = poll_done(api, f"{base}/runs/{run['id']}/", "inference")
    assert run["windows_scored"] == progress["windows"]
    response = api("GET", f"{base}/runs/{run['id']}/detections.csv")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows and rows[0]["label"] == "great tit" and rows[0]["site"] == "Wytham Woods"
    assert len(rows) == progress["windows"], rows[:3]
    # The two soundscapes nobody labeled (the second bird): their best-scored windows are its songs.
    top = [r for r in rows if r["recording"] not in labeled][:10]
    found = sum(int(float(r["start_s"]) // 3) in song[r["recording"]] for r in top)
    assert found >= 7, top
    state["labels"] = int(main.sql("SELECT count(*) FROM annotations_annotation"))


def test_three_workers_share_a_deployment_and_write_each_window_once(stack, demo_audio):
    main, api, base = stack["main"], stack["state"]["api"], stack["state"]["base"]
    # One worker first, warm from the loop above.
    one = ingest_windows_per_s(api, base, demo_audio["long_files"], "Throughput, one worker")
    main("up", "-d", "--scale", "worker=3", "--no-recreate", "worker")
    wait_for(lambda: main.workers_answering() == 3, timeout=300, interval=2, what="three workers")
    before = {c: recordings_embedded_by(c) for c in main.containers("worker")}
    deployment = api.json("POST", f"{base}/deployments/", 201, json={"name": "Three workers", "site": "Wytham Woods"})
    files = [
        *demo_audio["soundscapes"],
        *sorted(demo_audio["folder"].glob("XC*.wav")),
        demo_audio["folder"] / "birds_10s.wav",
    ]
    for path in files:
        upload(api, base, deployment["id"], path)
    progress, _ = ingest(api, base, deployment["id"], len(files))
    assert progress["files_done"] == len(files) and progress["files_failed"] == 0
    total, distinct = windows_written_once(main, deployment["id"])
    assert total == distinct == progress["windows"]
    expected = sum(r["windows_expected"] for r in api.json("GET", f"{base}/deployments/{deployment['id']}/recordings/"))
    assert total == expected
    embedded = {c: recordings_embedded_by(c) - before.get(c, 0) for c in main.containers("worker")}
    assert sum(embedded.values()) == len(files), embedded  # each file embedded by one worker, once
    assert sum(n > 0 for n in embedded.values()) >= 2, f"the files were not shared between workers: {embedded}"
    # Throughput once every worker has its model loaded, against the model alone.
    three = ingest_windows_per_s(api, base, demo_audio["long_files"], "Throughput, three workers")
    bare = bare_model_windows_per_s(main, demo_audio["long_files"])
    record(
        "embedding throughput (BirdNET, CPU, 6 files of 5 min, ingest queued to done)",
        f"the bare model in a worker container {bare:.1f} windows/s; one worker {one:.1f} ({one / bare:.2f} of it); "
        f"three workers {three:.1f} ({three / bare:.2f})",
    )
    main("up", "-d", "--scale", "worker=1", "--no-recreate", "worker")


def test_a_worker_on_another_host_embeds_uploads_and_server_folders(stack, demo_audio):
    main, remote, state = stack["main"], stack["remote"], stack["state"]
    api, base, project = state["api"], state["base"], state["project"]
    main("stop", "worker")
    remote("up", "-d", "--no-deps", "worker")
    (container,) = remote.containers("worker")
    mounts = json.loads(docker("inspect", "--format", "{{json .Mounts}}", container))
    # It shares nothing with the web host but the database, the broker and this storage.
    assert {m["Source"] for m in mounts} == {str(SHARED / "media"), str(SHARED / "audio")}
    assert all(m["Type"] == "bind" for m in mounts)
    wait_for(lambda: main.workers_answering() == 1, timeout=300, interval=2, what="the remote worker")

    folder = SHARED / "audio" / "site-b"
    folder.mkdir()
    for path in sorted(demo_audio["folder"].glob("XC*.wav")):
        shutil.copyfile(path, folder / path.name)
    subprocess.run(["chown", "-R", str(APP_UID), str(folder)], check=True)
    main.run_in(
        "web",
        "python",
        "manage.py",
        "shell",
        "-c",
        f"from annotations.deployments import grant_folder; from annotations.models import Project; "
        f"grant_folder(Project.objects.get(pk={project['id']}), '/data/audio/site-b')",
    )
    from_folder = api.json(
        "POST", f"{base}/deployments/", 201, json={"name": "Site B", "server_folder": "/data/audio/site-b"}
    )
    uploaded = api.json("POST", f"{base}/deployments/", 201, json={"name": "Remote uploads"})
    upload(api, base, uploaded["id"], demo_audio["folder"] / "birds_10s.wav")
    for deployment, files in ((from_folder, 2), (uploaded, 1)):
        queue_ingest(api, base, deployment["id"], files)
    for deployment in (from_folder, uploaded):
        progress = finished_ingest(api, base, deployment["id"])
        assert progress["files_failed"] == 0 and progress["files_done"] > 0 and progress["windows"] > 0
    assert recordings_embedded_by(container) == 3
    remote("down")
    main("start", "worker")


def test_stop_and_start_keep_every_label_and_window(stack):
    main, state = stack["main"], stack["state"]
    windows = main.sql("SELECT count(*) FROM annotations_window")
    labels = main.sql("SELECT count(*) FROM annotations_annotation")
    assert int(labels) == state["labels"] > 0 and int(windows) > 0
    main("down")
    main("up", "-d")
    wait_for(lambda: main.workers_answering() == 1, timeout=300, interval=2, what="the worker after a restart")
    assert main.sql("SELECT count(*) FROM annotations_window") == windows
    api = Api("ecologist", PASSWORD)
    assert len(api.json("GET", f"{state['base']}/annotations/")) == state["labels"]


def test_down_with_volumes_leaves_nothing(stack):
    main = stack["main"]
    label = f"label=com.docker.compose.project={main.project}"
    assert docker("volume", "ls", "-q", "--filter", label).split()  # the database's volume, before
    main("down", "-v", "--remove-orphans")
    assert docker("volume", "ls", "-q", "--filter", label).split() == []
    assert docker("ps", "-aq", "--filter", label).split() == []
