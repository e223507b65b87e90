# Stand-in for python:3.11-slim-bookworm (see README.md here).
FROM perch-standin/debian:bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# This machine's certificate authorities (build.sh copies them in): package registries
# may be reached through a proxy that presents its own certificate.
COPY host-ca-certificates.crt /etc/ssl/certs/host-ca-certificates.crt
ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt
