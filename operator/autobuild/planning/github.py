"""GitHub in the pure core: what a reconcile registers and posts, as data.

The reconcile's GitHub side, without I/O: which push webhook an AutomatedBuild should have, the
Secret that keeps a generated hook secret, and which commit status each build should show. The
controller performs the calls (:mod:`autobuild.sources.github`) and hands their answers back in
the snapshot; :mod:`autobuild.planning.hooks` decides from them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote, urlsplit

from autobuild import API_GROUP, API_VERSION, KIND
from autobuild.api.models import BuildPhase, BuildRecord, ImageSpec, SourceSpec
from autobuild.planning.job import LABEL_UID

HOOK_PATH: Final = "/hooks/github"
HOOK_SECRET_KEY: Final = "secret"  # noqa: S105 (a key name: webhookSecret Secrets use it too)
STATUS_DESCRIPTION_MAX: Final = 140  # GitHub answers 422 beyond this


class CommitState(StrEnum):
    """The four states of a GitHub commit status."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


@dataclass(frozen=True)
class CommitStatus:
    """What to post for one build on its commit (see :func:`commit_status`)."""

    state: CommitState
    context: str
    description: str
    target_url: str | None


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_PHASE_STATES: Final = {
    BuildPhase.PENDING: CommitState.PENDING,
    BuildPhase.QUEUED: CommitState.PENDING,
    BuildPhase.RUNNING: CommitState.PENDING,
    BuildPhase.SUCCEEDED: CommitState.SUCCESS,
    BuildPhase.FAILED: CommitState.FAILURE,
    # The build did not run to its end: "error" (GitHub: the check could not complete).
    BuildPhase.TIMED_OUT: CommitState.ERROR,
    BuildPhase.CANCELLED: CommitState.ERROR,
}


def commit_state(phase: BuildPhase) -> CommitState:
    """The GitHub commit state of a build phase."""
    return _PHASE_STATES[phase]


def status_context(image: ImageSpec, tags: Sequence[str]) -> str:
    """``autobuild/<image>:<first tag>``; Docker Hub images without ``docker.io/``."""
    repository = image.repository.removeprefix("docker.io/")
    return f"autobuild/{repository}:{tags[0]}" if tags else f"autobuild/{repository}"


def format_duration(seconds: int) -> str:
    """``45s``, ``2m 5s``, ``1h 0m 3s``."""
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


_PHASE_WORDS: Final = {
    BuildPhase.PENDING: "Build pending",
    BuildPhase.QUEUED: "Build queued",
    BuildPhase.RUNNING: "Building",
    BuildPhase.SUCCEEDED: "Build succeeded",
    BuildPhase.FAILED: "Build failed",
    BuildPhase.TIMED_OUT: "Build timed out",
    BuildPhase.CANCELLED: "Build cancelled",
}


def status_description(
    phase: BuildPhase, duration_seconds: int | None = None, reason: str | None = None
) -> str:
    """``Build succeeded in 2m 5s``, ``Build failed after 40s: PushDenied``; at most 140."""
    text = _PHASE_WORDS[phase]
    if duration_seconds is not None and phase not in (BuildPhase.PENDING, BuildPhase.QUEUED):
        joiner = (
            "in"
            if phase == BuildPhase.SUCCEEDED
            else "for"
            if phase == BuildPhase.RUNNING
            else "after"
        )
        text += f" {joiner} {format_duration(duration_seconds)}"
    if reason and phase in (BuildPhase.FAILED, BuildPhase.TIMED_OUT, BuildPhase.CANCELLED):
        text += f": {reason}"
    return shorten(text, STATUS_DESCRIPTION_MAX)


def target_url(template: str, *, namespace: str, name: str, build: str, commit: str) -> str | None:
    """The status link from ``AUTOBUILD_BUILD_URL_TEMPLATE`` (None when it is unset).

    Values are percent-encoded; the template was checked by the settings.
    """
    if not template:
        return None
    values = {"namespace": namespace, "name": name, "build": build, "commit": commit}
    return template.format_map({k: quote(v, safe="") for k, v in values.items()})


def commit_status(
    image: ImageSpec, namespace: str, name: str, record: BuildRecord, url_template: str = ""
) -> CommitStatus:
    """The commit status one build should show now (post it when state or text changes)."""
    return CommitStatus(
        state=commit_state(record.phase),
        context=status_context(image, record.tags),
        description=status_description(record.phase, record.duration_seconds, record.reason),
        target_url=target_url(
            url_template, namespace=namespace, name=name, build=record.id, commit=record.commit
        ),
    )


def hook_url(public_url: str, namespace: str, name: str) -> str:
    """The push webhook URL of one AutomatedBuild: ``{public_url}/hooks/github?automatedbuild=
    NAMESPACE/NAME``.

    One hook per AutomatedBuild (not per repository): each has its own secret, and deleting one
    AutomatedBuild removes only its hook while another one building the same repository keeps
    receiving pushes. The receiver routes on the path; the query tells it which secret to try.
    """
    return f"{public_url.rstrip('/')}{HOOK_PATH}?automatedbuild={quote(namespace)}/{quote(name)}"


def repository_full_name(source: SourceSpec) -> str | None:
    """``owner/name`` of ``spec.source.repo`` (``github.com/acme/app``, ``https://.../app.git``);
    None when the path is not exactly OWNER/NAME."""
    path = urlsplit(source.repo if "://" in source.repo else f"https://{source.repo}").path
    parts = [part for part in path.strip("/").split("/") if part]
    if len(parts) != 2:
        return None
    return f"{parts[0]}/{parts[1].removesuffix('.git')}"


def hook_secret_name(automated_build_name: str) -> str:
    """Name of the Secret holding the generated hook secret: ``<name>-github-hook``.

    Names too long for the suffix keep a hash of the full name, so two never collide.
    """
    suffix = "-github-hook"
    if len(automated_build_name) + len(suffix) <= 253:
        return automated_build_name + suffix
    digest = hashlib.sha256(automated_build_name.encode()).hexdigest()[:10]
    return f"{automated_build_name[: 253 - len(suffix) - 11].rstrip('.-')}-{digest}{suffix}"


def hook_secret_manifest(
    namespace: str, automated_build_name: str, uid: str, secret: str
) -> dict[str, Any]:
    """The Secret the operator creates (and owns) to keep a generated hook secret.

    Key ``secret`` as in ``webhookSecret`` Secrets; owned by the AutomatedBuild, so the garbage
    collector removes it with it; labelled with its uid like the build Jobs.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": hook_secret_name(automated_build_name),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "autobuild",
                "app.kubernetes.io/component": "github-webhook",
                "app.kubernetes.io/managed-by": "autobuild",
                LABEL_UID: uid,
            },
            "ownerReferences": [
                {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": KIND,
                    "name": automated_build_name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "stringData": {HOOK_SECRET_KEY: secret},
    }
