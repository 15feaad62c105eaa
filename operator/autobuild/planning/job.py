"""The Kaniko Job renderer: a planned build -> a ``batch/v1`` Job manifest (a plain dict)."""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from autobuild.api.models import AutomatedBuild, AutomatedBuildSpec, Trigger
from autobuild.api.registries import is_docker_hub
from autobuild.api.repos import repo_scheme, strip_scheme
from autobuild.planning import credentials
from autobuild.planning.planner import PlannedBuild
from autobuild.settings import BuildSettings

LABEL_PREFIX: Final = "autobuild.dev/"
LABEL_AUTOMATEDBUILD: Final = LABEL_PREFIX + "automatedbuild"
LABEL_UID: Final = LABEL_PREFIX + "uid"
LABEL_RULE: Final = LABEL_PREFIX + "rule"
LABEL_COMMIT: Final = LABEL_PREFIX + "commit"
LABEL_TRIGGER: Final = LABEL_PREFIX + "trigger"
LABEL_BUILD_ID: Final = LABEL_PREFIX + "build-id"
ANNOTATION_SOURCE_REF: Final = LABEL_PREFIX + "source-ref"
ANNOTATION_TAGS: Final = LABEL_PREFIX + "tags"
ANNOTATION_COMMIT: Final = LABEL_PREFIX + "commit"

CONTAINER_NAME: Final = "kaniko"
DOCKER_CONFIG_DIR: Final = "/kaniko/.docker"
# spec.image.caSecret's ca.crt, mounted for Kaniko's --registry-certificate (read-only; Kaniko
# leaves /kaniko and mounted volumes out of the image).
REGISTRY_CA_DIR: Final = "/kaniko/registry-ca"
REGISTRY_CA_KEY: Final = "ca.crt"
REGISTRY_CA_PATH: Final = f"{REGISTRY_CA_DIR}/{REGISTRY_CA_KEY}"
# go-containerregistry names Docker Hub `index.docker.io`; Kaniko looks its per-registry flags
# up by that name.
_KANIKO_DOCKER_HUB: Final = "index.docker.io"
TERMINATION_LOG: Final = "/dev/termination-log"
_MAX_NAME = 63
_NAME_PREFIX_MAX = 38
_LABEL_VALUE_MAX = 63
Obj = dict[str, Any]
# Builds a person asked for: each is a new build, even of a commit that was built before.
PERSON_TRIGGERS: Final = frozenset({Trigger.CREATE, Trigger.MANUAL})


@dataclass(frozen=True)
class BuildIdentity:
    """The deterministic name and id of one build's Job."""

    job_name: str
    build_id: str


def _dns_label(text: str, limit: int) -> str:
    """Lowercase ``text`` into a DNS-1123 label fragment of at most ``limit`` characters."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    label = re.sub(r"-{2,}", "-", label).strip("-")[:limit].rstrip("-")
    return label or "build"


def _label_value(text: str) -> str:
    """A label value of at most 63 characters; long values keep a hash suffix to stay unique."""
    if len(text) <= _LABEL_VALUE_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[: _LABEL_VALUE_MAX - 9].rstrip('-._')}-{digest}"


def build_identity(automated_build: AutomatedBuild, build: PlannedBuild) -> BuildIdentity:
    """Name a build deterministically, at most 63 characters.

    An automatic build (push, poll, trigger URL) is keyed by what it produces: the owner, the
    rule, the ref and the commit, whatever channel saw the push, so a redelivery or a poll after
    a webhook maps to the same Job name (creating it again answers 409) while two refs at one
    commit are two builds. A build a person asked for (creation, manual trigger) also keys on
    its trigger id: each press of the button is a new build.
    """
    meta = automated_build.metadata
    owner = meta.uid or f"{meta.namespace}/{meta.name}"
    event = build.event
    parts = [owner, str(build.rule_index), event.git_ref, event.commit]
    if event.trigger in PERSON_TRIGGERS:
        parts += [event.trigger.value, event.trigger_id]
    build_id = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]
    name = f"{_dns_label(meta.name, _NAME_PREFIX_MAX)}-{event.commit[:7]}-{build_id}"
    return BuildIdentity(job_name=name[:_MAX_NAME], build_id=build_id)


def clone_url(spec: AutomatedBuildSpec) -> str:
    """The URL git clones from: the repo as written when it is an http(s) URL, else
    ``https://HOST/PATH.git``."""
    repo = spec.source.repo.rstrip("/")
    if strip_scheme(repo) != repo:
        return repo
    return f"https://{repo}" + ("" if repo.endswith(".git") else ".git")


def git_context(spec: AutomatedBuildSpec, git_ref: str, commit: str) -> str:
    """Kaniko's git build context, pinned to the commit: ``git://HOST/PATH#REF#COMMIT``.

    Kaniko picks http or https from ``GIT_PULL_METHOD`` (see :func:`git_env`), not from here.
    """
    return f"git://{strip_scheme(clone_url(spec))}#{git_ref}#{commit}"


def cache_repo(spec: AutomatedBuildSpec) -> str:
    """Where Kaniko keeps cached layers: a sibling repository, since Docker Hub has two levels."""
    image = spec.image
    if image.registry in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return f"{image.registry}/{image.namespace}/{image.name}-buildcache"
    return f"{image.repository}/buildcache"


def build_args(spec: AutomatedBuildSpec, build: PlannedBuild) -> dict[str, str]:
    """Docker Hub's build variables, then ``spec.buildArgs`` (which may not override them)."""
    docker_repo = spec.image.repository
    docker_tag = build.tags[0]
    builtin = {
        "SOURCE_BRANCH": build.event.name,
        "SOURCE_COMMIT": build.event.commit,
        "COMMIT_MSG": build.event.message,
        "DOCKER_REPO": docker_repo,
        "DOCKERFILE_PATH": build.rule.dockerfile,
        "DOCKER_TAG": docker_tag,
        "IMAGE_NAME": f"{docker_repo}:{docker_tag}",
    }
    return {**dict(sorted(spec.build_args.items())), **builtin}


def kaniko_registry_name(registry: str) -> str:
    """The registry as Kaniko keys its per-registry flags: the reference's registry part
    (``host[:port]``), Docker Hub's aliases as ``index.docker.io``."""
    return _KANIKO_DOCKER_HUB if is_docker_hub(registry) else registry


def kaniko_args(
    spec: AutomatedBuildSpec, build: PlannedBuild, settings: BuildSettings
) -> list[str]:
    """The executor's arguments. Every value uses ``--flag=value`` so none can pose as a flag."""
    rule = build.rule
    event = build.event
    args = [f"--context={git_context(spec, event.git_ref, event.commit)}"]
    if spec.source.credentials_secret is None:
        # Docker Hub cloned submodules too. Not with credentials: Kaniko's go-git clones every
        # submodule with the repository's Basic auth, to whatever host .gitmodules names.
        args.append("--git=recurse-submodules=true")
    if rule.context_sub_path:
        args.append(f"--context-sub-path={rule.context_sub_path}")
    args.append(f"--dockerfile={rule.dockerfile}")
    args += [f"--destination={spec.image.repository}:{tag}" for tag in build.tags]
    args += [f"--digest-file={TERMINATION_LOG}", "--snapshot-mode=redo"]
    args.append(f"--push-retry={settings.push_retry}")
    if rule.build_cache:
        args += [
            "--cache=true",
            f"--cache-repo={cache_repo(spec)}",
            f"--cache-ttl={settings.cache_ttl}",
        ]
    # Per registry, for pushes, the cache and base-image pulls alike (Kaniko's --insecure and
    # --insecure-pull would drop TLS for every registry, Docker Hub's base images included).
    for registry in settings.insecure_registries:
        args += [f"--insecure-registry={registry}", f"--skip-tls-verify-registry={registry}"]
    if spec.image.ca_secret is not None:
        # Added to the system's CAs for this registry only: pushes, the cache and base images
        # pulled from it verify against the private CA; every other registry is unchanged.
        registry = kaniko_registry_name(spec.image.registry)
        args.append(f"--registry-certificate={registry}={REGISTRY_CA_PATH}")
    args += [f"--build-arg={name}={value}" for name, value in build_args(spec, build).items()]
    args += [
        f"--label=org.opencontainers.image.source={clone_url(spec)}",
        f"--label=org.opencontainers.image.revision={event.commit}",
        f"--label=org.opencontainers.image.description={spec.image.short_description}",
    ]
    return args


def git_env(spec: AutomatedBuildSpec, secret_keys: Collection[str] = ()) -> list[dict[str, Any]]:
    """Git transport and credentials for Kaniko: ``GIT_USERNAME`` + ``GIT_PASSWORD``.

    The token (and a ``username`` key, when the Secret has one: ``secret_keys`` are the key
    names of ``credentialsSecret``) only ever come from the Secret by reference. Kaniko sends
    them as go-git's HTTP Basic auth, as :func:`credentials.git_username` tells ls-remote to.
    """
    env: list[dict[str, Any]] = []
    if repo_scheme(spec.source.repo) == "http":
        env.append({"name": "GIT_PULL_METHOD", "value": "http"})
    secret = spec.source.credentials_secret
    if secret is None:
        return env
    if credentials.USERNAME_KEY in secret_keys:
        ref = {"secretKeyRef": {"name": secret, "key": credentials.USERNAME_KEY}}
        env.append({"name": "GIT_USERNAME", "valueFrom": ref})
    else:
        env.append({"name": "GIT_USERNAME", "value": credentials.default_username(spec.provider)})
    token_ref = {"secretKeyRef": {"name": secret, "key": credentials.TOKEN_KEY}}
    env.append({"name": "GIT_PASSWORD", "valueFrom": token_ref})
    return env


def _labels(automated_build: AutomatedBuild, build: PlannedBuild, build_id: str) -> dict[str, str]:
    meta = automated_build.metadata
    labels = {
        "app.kubernetes.io/name": "autobuild",
        "app.kubernetes.io/component": "build",
        "app.kubernetes.io/managed-by": "autobuild",
        LABEL_AUTOMATEDBUILD: _label_value(meta.name),
        LABEL_RULE: str(build.rule_index),
        LABEL_COMMIT: build.event.commit[:40],
        LABEL_TRIGGER: build.event.trigger.value,
        LABEL_BUILD_ID: build_id,
    }
    if meta.uid:
        labels[LABEL_UID] = meta.uid
    return labels


def _secret_volumes(spec: AutomatedBuildSpec) -> tuple[list[Obj], list[Obj]]:
    """The container's mounts and the pod's volumes: the push Secret as Kaniko's docker config,
    the CA Secret's ``ca.crt`` for ``--registry-certificate``; only the keys Kaniko reads."""
    mounts: list[Obj] = []
    volumes: list[Obj] = []
    for name, secret, directory, key, path in (
        (
            "docker-config",
            spec.image.push_secret,
            DOCKER_CONFIG_DIR,
            ".dockerconfigjson",
            "config.json",
        ),
        ("registry-ca", spec.image.ca_secret, REGISTRY_CA_DIR, REGISTRY_CA_KEY, REGISTRY_CA_KEY),
    ):
        if secret is None:
            continue
        mounts.append({"name": name, "mountPath": directory, "readOnly": True})
        volumes.append(
            {"name": name, "secret": {"secretName": secret, "items": [{"key": key, "path": path}]}}
        )
    return mounts, volumes


def render_job(
    automated_build: AutomatedBuild,
    build: PlannedBuild,
    settings: BuildSettings,
    secret_keys: Collection[str] = (),
) -> dict[str, Any]:
    """The complete Kaniko Job for one planned build.

    ``secret_keys``: the key names of ``spec.source.credentialsSecret`` (the renderer reads no
    Secret); a ``username`` key is then passed by reference instead of the provider's default.
    """
    spec = automated_build.spec
    meta = automated_build.metadata
    identity = build_identity(automated_build, build)
    labels = _labels(automated_build, build, identity.build_id)
    limits = {"cpu": settings.cpu_limit, "memory": settings.memory_limit}
    if settings.ephemeral_storage_limit:
        limits["ephemeral-storage"] = settings.ephemeral_storage_limit
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": settings.executor_image,
        "args": kaniko_args(spec, build, settings),
        "env": git_env(spec, secret_keys),
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": limits,
        },
        # The digest file is the termination log; on failure Kubernetes falls back to the log tail.
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
    }
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    mounts, volumes = _secret_volumes(spec)
    if volumes:
        container["volumeMounts"] = mounts
        pod_spec["volumes"] = volumes
    metadata: dict[str, Any] = {
        "name": identity.job_name,
        "namespace": meta.namespace,
        "labels": labels,
        "annotations": {
            ANNOTATION_SOURCE_REF: build.event.git_ref,
            ANNOTATION_COMMIT: build.event.commit,
            ANNOTATION_TAGS: ",".join(build.tags),
        },
    }
    if meta.uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": automated_build.api_version,
                "kind": automated_build.kind,
                "name": meta.name,
                "uid": meta.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.timeout_seconds,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": merge_patch(pod_spec, settings.build_pod_patch),
            },
        },
    }


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` with a JSON merge patch (RFC 7386) applied: objects merge key by key,
    ``null`` removes a key, anything else (lists too) replaces. Neither input is changed."""
    result = copy.deepcopy(dict(target))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            current = result.get(key)
            result[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result
