#!/usr/bin/env bash
# Perch Agile's two commands:
#   bash run.sh         install, start the embedded services, migrate, load the demo,
#                       start a Celery worker and the web server, print URL and login
#   bash run.sh test    install, start the embedded services, run the whole test suite
#   bash run.sh compose-test   build and run docker-compose.yml for real (tests/test_compose.py)
# With DATABASE_URL / REDIS_URL set, those servers are used instead of embedded ones.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PYTHON="$VENV/bin/python"

install() {
  if [ ! -x "$PYTHON" ]; then
    local base
    base=$(command -v python3.11 || command -v python3)
    "$base" -c 'import sys; assert (3, 10) <= sys.version_info[:2] < (3, 14), "Python 3.10-3.13 needed"'
    "$base" -m venv "$VENV"
  fi
  # Reinstall only when requirements.txt changed since the last install.
  local stamp="$VENV/.requirements.sha256"
  local wanted
  wanted=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    "$PYTHON" -m pip install --quiet --upgrade pip
    "$PYTHON" -m pip install --quiet -r requirements.txt
    echo "$wanted" > "$stamp"
  fi
}

start_services() {
  "$PYTHON" -m perch_agile.embedded start >/dev/null
}

serve() {
  export DJANGO_DEBUG="${DJANGO_DEBUG:-1}"
  local port="${PORT:-8000}"
  "$PYTHON" manage.py migrate --noinput
  local login
  login=$("$PYTHON" manage.py load_demo | sed -n 's/^login: //p')
  mkdir -p var/log
  "$VENV/bin/celery" -A perch_agile worker --loglevel=INFO --concurrency="${WORKERS:-1}" \
    >var/log/worker.log 2>&1 &
  WORKER_PID=$!
  trap 'kill "$WORKER_PID" 2>/dev/null || true' EXIT INT TERM
  echo
  echo "Perch Agile is running at http://127.0.0.1:${port}/  (login: ${login})"
  echo "Worker log: var/log/worker.log. Stop with Ctrl-C."
  echo
  # Threads, not sync workers: with nothing buffering in front (production has nginx), a
  # request whose body arrives slowly holds one of 8 threads, not one of 2 processes.
  "$VENV/bin/gunicorn" perch_agile.wsgi --bind "127.0.0.1:${port}" --workers 2 --worker-class gthread --threads 4 \
    --timeout 120 --access-logfile -
}

ensure_test_programs() {
  # Browser tests drive Debian's Chromium (Playwright's own browser download needs network);
  # serving tests put Debian's nginx in front of gunicorn, as docker-compose.yml does.
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  PATH="$PATH:/usr/sbin" command -v nginx >/dev/null || missing+=(nginx)
  [ "${#missing[@]}" -eq 0 ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "${missing[*]} not installed (apt-get install ${missing[*]}): the tests that need them will be skipped" >&2
  fi
}

run_tests() {
  ensure_test_programs
  export DJANGO_DEBUG=1
  set +e
  "$PYTHON" -m pytest "$@"
  local status=$?
  set -e
  if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests" >&2
  fi
  return "$status"
}

compose_test() {
  # Docker's engine, Debian's packages where it is missing; compose v2 as the plugin where
  # there is one, else Debian's docker-compose in a container with the host's socket.
  if ! command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  fi
  if ! docker info >/dev/null 2>&1; then
    mkdir -p var/log
    (dockerd >var/log/dockerd.log 2>&1 &)
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
  # The official base images where a registry answers, else stand-ins from Debian's archive;
  # compose v2 as Docker's plugin where there is one, else Debian's in a container.
  local standins=0
  if ! docker pull -q python:3.11-slim-bookworm >/dev/null 2>&1; then
    standins=1
    export PYTHON_IMAGE=perch-standin/python PG_IMAGE=perch-standin/postgres \
      REDIS_IMAGE=perch-standin/redis NGINX_IMAGE=perch-standin/nginx
  fi
  if docker compose version >/dev/null 2>&1; then
    export PERCH_AGILE_COMPOSE="docker compose"
  else
    standins=1
    export PERCH_AGILE_COMPOSE="docker run --rm -i -v /var/run/docker.sock:/var/run/docker.sock -v $PWD:$PWD -w $PWD perch-standin/compose"
  fi
  if [ "$standins" = 1 ]; then
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    bash perch_agile/deploy/standins/build.sh
  fi
  run_tests tests/test_compose.py -v -p no:cacheprovider "$@"
}

install
start_services
case "${1:-serve}" in
  serve) serve ;;
  test) shift; run_tests "$@" ;;
  compose-test) shift; compose_test "$@" ;;
  *) echo "usage: bash run.sh [test [pytest args] | compose-test]" >&2; exit 2 ;;
esac
