# Docker's compose v2 from Debian's archive, run with the host's socket (see README.md here).
FROM perch-standin/debian:trixie
RUN apt-get update \
    && apt-get install -y --no-install-recommends docker-compose docker-cli \
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["docker-compose"]
