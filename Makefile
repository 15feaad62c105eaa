# autobuild — developer entry points. Every target installs what it needs, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install registry test unit lint crds docs chart-crds controlplane cluster-up cluster-down demo \
	bench helm image base-image e2e

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

# Debian's docker-registry (distribution 2.8): the real OCI registry that tests/support/registry.py
# runs on loopback. Idempotent: a no-op when it is installed.
registry:
	@command -v docker-registry >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry; }

# The whole suite: unit tests and the @pytest.mark.k8s tests on the real local control plane.
# pytest exits 5 when it collects no test; that is not a failure of the suite itself.
test: install registry controlplane helm
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

# Only the tests that need no cluster.
unit: install registry helm
	$(PY) -m pytest -m 'not k8s' $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check operator tests examples
	$(VENV)/bin/ruff format --check operator tests examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Regenerate the CRD from the pydantic models (the single source of truth), the chart's copy
# of it (Helm installs CRDs only from the chart's crds/ directory) and the API reference.
crds: install
	$(PY) -m autobuild.api.crd > crds/automatedbuild.yaml
	$(MAKE) chart-crds docs

# docs/api.md, the API reference, from the same models (a unit test fails when it drifts).
docs: install
	$(PY) -m autobuild.api.reference > docs/api.md

chart-crds:
	cp crds/automatedbuild.yaml charts/autobuild/crds/automatedbuild.yaml

# helm, built from its Go module (helm.sh/helm/v3, pinned in tests/support/helmbin.py) and
# cached in $${AUTOBUILD_CACHE_DIR:-~/.cache/autobuild}/helm/<version>-<recipe>/bin/helm. The chart's
# tests use it. Cold (empty Go caches, 2 shared cores): about 2.5 minutes; afterwards a no-op.
helm: install
	$(PY) tests/support/helmbin.py

# The operator image, tagged with the package version, with the first container builder found
# (docker, podman or buildah). IMAGE=registry/name, BASE_IMAGE=python:...@sha256:... to pin.
IMAGE ?= autobuild/operator
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
BUILD_ARGS := $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE))
image:
	@builder=$$(command -v docker || command -v podman || command -v buildah) || { \
	  echo "make image: no container builder (docker, podman or buildah) on PATH" >&2; exit 1; }; \
	case "$$builder" in */buildah) sub=bud;; *) sub=build;; esac; \
	echo "$$builder $$sub -t $(IMAGE):$(VERSION) $(BUILD_ARGS) ."; \
	"$$builder" $$sub -t "$(IMAGE):$(VERSION)" $(BUILD_ARGS) .

# The operator image's base made from Debian packages only (tests/controlplane/baseimage.py):
# debootstrap --variant=minbase of this host's Debian release + python3 python3-venv git
# ca-certificates, one reproducible layer cached in
# $${AUTOBUILD_CACHE_DIR:-~/.cache/autobuild}/controlplane/base-<key>/ (root; cold ~1.5 min).
# `make base-image REGISTRY=127.0.0.1:PORT` also pushes it there with crane.
base-image: install
	$(PY) -m tests.controlplane.baseimage $(if $(REGISTRY),push $(REGISTRY),build)

# autobuild builds, installs and runs itself on the real node (tests/k8s/test_selfimage.py):
# the base image, the self-build by the operator's own Kaniko Job, `helm install` of that
# image, a build from a signed GitHub push by the in-cluster operator, a broken image.
E2E_ARGS ?=
e2e: install registry controlplane helm base-image
	$(PY) -m pytest -m e2e tests/k8s/test_selfimage.py $(E2E_ARGS)

# The local control plane (tests/controlplane, docs/controlplane.md): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kubelet and kwok built from the pinned Go
# modules and cached in $${AUTOBUILD_CACHE_DIR:-~/.cache/autobuild}/controlplane/<key>/bin,
# and the real node's artifacts (Kaniko executor, crane, containerd, runc, busybox from
# Debian packages, image layers) in .../controlplane/node-<key>/.
# The first run builds (tens of minutes on 2 cores); afterwards it is a no-op.
CONTROLPLANE := $(PY) -m tests.controlplane.localcluster
CLUSTER_DIR ?= .cluster
# NODE=real adds a real node (kubelet + containerd, root only) and a registry beside kwok's.
NODE ?= kwok

controlplane: install
	$(CONTROLPLANE) build --real-node

# Starts a cluster in the background and writes $(CLUSTER_DIR)/kubeconfig. Idempotent.
cluster-up: controlplane
	$(CONTROLPLANE) up --state-dir $(CLUSTER_DIR) $(if $(filter real,$(NODE)),--real-node)

# Stops it, and the operator and git server `make demo` left running. Idempotent.
cluster-down: install
	$(PY) -m examples.demo --stop
	$(CONTROLPLANE) down --state-dir $(CLUSTER_DIR)

# Docker Hub's Automated Builds walkthrough on the local cluster with its real node (Linux,
# root): the operator builds a git repository with Kaniko on creation and again on a signed
# GitHub push webhook, crane proves the registry's digests, a pod runs the image by digest
# (examples/demo.py). Checks the host first, builds the binaries if needed; leaves the cluster,
# the operator and the demo's git server running (make cluster-down stops them).
demo: install
	$(PY) -m examples.demo --check-host
	$(MAKE) cluster-up NODE=real
	$(PY) -m examples.demo

# Speed and cost of the operator against floors measured in the same run, on its own local
# control plane (tests/bench/bench_operator.py): a table, then one JSON line; asserts nothing.
# Default sizes (1,000 / 10,000 AutomatedBuilds): 17.5 min on 2 cores with the operator of
# bc99e15 (its 10k first pass hits the 11-minute limit). Quick runs:
# AUTOBUILD_BENCH_SCALE=0.1 make bench (5.5 min), make bench BENCH_ARGS="--objects 200" (4 min).
bench: controlplane
	$(PY) -m tests.bench.bench_operator $(BENCH_ARGS)
