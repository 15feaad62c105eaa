# syntax=docker/dockerfile:1
# The autobuild operator image: `make image` (docker, podman or buildah), tagged with the
# package version. Multi-stage: the build stage installs the package into a virtualenv; the
# runtime stage is the slim base plus git (the operator runs `git ls-remote`) and that venv.
#
# BASE_IMAGE: an exact tag (never latest); pin a digest too where you build:
#   make image BASE_IMAGE=python:3.12.11-slim-bookworm@sha256:<digest>
# Any Debian-like base with python3 >= 3.11 (and its venv module) works, e.g. the one
# `make base-image` makes from Debian packages (python3 python3-venv git ca-certificates).
ARG BASE_IMAGE=python:3.12.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# A private package index (or a mirror): --build-arg PIP_INDEX_URL=https://... (make e2e
# serves a wheelhouse on 127.0.0.1 this way). Its CA, if private: PIP_CERT, the path of a
# bundle the builder can read (Kaniko: /kaniko/ssl/certs/ca-certificates.crt, the
# executor's own). Unset, pip uses PyPI and the base's CA certificates. Build args show in
# the image's history: put no credentials in the URL.
ARG PIP_INDEX_URL
ARG PIP_CERT
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# python3, not python: Debian's python3 has no `python` command.
RUN python3 -m venv /opt/autobuild \
 && /opt/autobuild/bin/pip install . \
 && /opt/autobuild/bin/pip uninstall -y pip

FROM ${BASE_IMAGE}
# git: the operator runs `git ls-remote`. A base that has it already needs no apt-get.
RUN command -v git >/dev/null || { apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/*; }
COPY --from=build /opt/autobuild /opt/autobuild
# The root filesystem is read-only in the Deployment: HOME and scratch space live on /tmp
# (an emptyDir there). uid 65532 has no /etc/passwd entry: kopf names the operator after
# getpass.getuser(), which reads LOGNAME before it asks the password database (and fails).
ENV PATH=/opt/autobuild/bin:$PATH \
    HOME=/tmp \
    LOGNAME=autobuild \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric non-root user, so that runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["autobuild"]
CMD ["run", "--probes", "0.0.0.0:8081", "--webhook-address", "0.0.0.0:8080", "--log-format", "json"]
