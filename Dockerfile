# One image for web and worker. The GPU worker builds with --build-arg TF_PACKAGE=tensorflow[and-cuda]==2.21.0.
FROM python:3.11-slim-bookworm

ARG TF_PACKAGE=tensorflow-cpu==2.21.0
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
# Swap the TensorFlow wheel for the GPU build where asked; everything else is pinned as in development.
RUN sed -i "s/^tensorflow-cpu==.*/${TF_PACKAGE}/" requirements.txt \
    && pip install -r requirements.txt

COPY . .
RUN DJANGO_SECRET_KEY=collectstatic-only DATABASE_URL=postgresql://build@localhost/build \
    python manage.py collectstatic --noinput

RUN useradd --create-home perch && mkdir -p /data/media /data/audio && chown -R perch /data /app
USER perch
EXPOSE 8000
CMD ["gunicorn", "perch_agile.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]
