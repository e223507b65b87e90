# Two images: "app" for web and worker (docker-compose.gpu.yml builds it with
# --build-arg TF_PACKAGE=tensorflow[and-cuda]==2.21.0), and "proxy", the nginx in front
# of web. The base images are build arguments so that a machine with no registry can
# build from stand-ins (perch_agile/deploy/standins); the official images are the defaults.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NGINX_IMAGE=nginx:1.28-alpine

FROM ${PYTHON_IMAGE} AS app

ARG TF_PACKAGE=tensorflow-cpu==2.21.0
# A fixed uid, so that a shared filesystem mounted on several hosts (workers on other
# hosts, README) sees the same owner everywhere.
ARG APP_UID=10001
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
COPY requirements.txt .
# Swap the TensorFlow wheel for the GPU build where asked; everything else is pinned as in development.
RUN sed -i "s/^tensorflow-cpu==.*/${TF_PACKAGE}/" requirements.txt \
    && pip install -r requirements.txt

COPY . .
RUN DJANGO_SECRET_KEY=collectstatic-only DATABASE_URL=postgresql://build@localhost/build \
    python manage.py collectstatic --noinput

RUN useradd --uid "${APP_UID}" --create-home perch \
    && mkdir -p /data/media /data/audio && chown -R perch /data /app
USER perch
EXPOSE 8000
CMD ["gunicorn", "perch_agile.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120", \
     "--access-logfile", "-"]

# nginx renders /etc/nginx/templates/*.template into conf.d at start, substituting only the
# PERCH_AGILE_* variables (its own $variables stay as they are).
FROM ${NGINX_IMAGE} AS proxy
RUN rm -f /etc/nginx/conf.d/default.conf
COPY perch_agile/deploy/nginx.conf.template /etc/nginx/templates/perch_agile.conf.template
COPY --from=app /app/staticfiles /srv/static
ENV NGINX_ENVSUBST_FILTER=^PERCH_AGILE_ \
    PERCH_AGILE_LISTEN=80 PERCH_AGILE_UPSTREAM=web:8000 PERCH_AGILE_STATIC_ROOT=/srv/static
