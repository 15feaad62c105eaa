"""Webhook deliveries shaped like the providers' documented examples, and their signed headers.

Field sets follow GitHub's "push" and "ping" event docs, Bitbucket Cloud's ``repo:push``
event payload docs and GitLab's "Push Hook" / "Tag Push Hook" examples; values are made up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

ZERO = "0" * 40
BEFORE = "9049f1265b7d61be4a8904a9a27120d2064dab3b"
AFTER = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
TAG_OBJECT = "8a3e1d5c6f7b2a4e9d0c1b2a3f4e5d6c7b8a9f0e"


def _github_repository(full_name: str, host: str) -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {
        "id": 35129377,
        "node_id": "MDEwOlJlcG9zaXRvcnkzNTEyOTM3Nw==",
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": {"name": owner, "email": None, "login": owner, "id": 21031067, "type": "User"},
        "html_url": f"https://{host}/{full_name}",
        "description": "",
        "fork": False,
        "url": f"https://{host}/{full_name}",
        "git_url": f"git://{host}/{full_name}.git",
        "ssh_url": f"git@{host}:{full_name}.git",
        "clone_url": f"https://{host}/{full_name}.git",
        "default_branch": "main",
        "master_branch": "main",
    }


def _github_commit(sha: str, message: str, full_name: str, host: str) -> dict[str, Any]:
    person = {"name": "Ada Lovelace", "email": "ada@example.com", "username": "ada"}
    return {
        "id": sha,
        "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
        "distinct": True,
        "message": message,
        "timestamp": "2026-11-29T08:00:00+00:00",
        "url": f"https://{host}/{full_name}/commit/{sha}",
        "author": person,
        "committer": person,
        "added": ["Dockerfile"],
        "removed": [],
        "modified": ["README.md"],
    }


def github_push(
    ref: str = "refs/heads/main",
    after: str = AFTER,
    *,
    before: str = BEFORE,
    commit: str | None = None,
    message: str = "Fix the cavity flow boundary\n\nLonger body.",
    full_name: str = "acme/app",
    host: str = "github.com",
    forced: bool = False,
) -> dict[str, Any]:
    """A ``push`` event; ``after`` of the zero commit deletes the ref (head_commit null).

    ``commit`` differs from ``after`` for an annotated tag (``after`` is the tag object).
    """
    deleted = after == ZERO
    head = None if deleted else _github_commit(commit or after, message, full_name, host)
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": _github_repository(full_name, host),
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "sender": {"login": "ada", "id": 21031067, "type": "User"},
        "created": before == ZERO,
        "deleted": deleted,
        "forced": forced,
        "base_ref": None,
        "compare": f"https://{host}/{full_name}/compare/{before[:12]}...{after[:12]}",
        "commits": [] if head is None else [head],
        "head_commit": head,
    }


def github_ping(full_name: str = "acme/app", host: str = "github.com") -> dict[str, Any]:
    """The ``ping`` GitHub sends when a repository hook is created."""
    return {
        "zen": "Responsive is better than fast.",
        "hook_id": 30,
        "hook": {
            "type": "Repository",
            "id": 30,
            "name": "web",
            "active": True,
            "events": ["push"],
            "config": {
                "content_type": "json",
                "insecure_ssl": "0",
                "url": "https://x/hooks/github",
            },
        },
        "repository": _github_repository(full_name, host),
        "sender": {"login": "ada", "id": 21031067, "type": "User"},
    }


def _bitbucket_target(sha: str, message: str, full_name: str) -> dict[str, Any]:
    return {
        "type": "commit",
        "hash": sha,
        "author": {
            "type": "author",
            "raw": "Ada Lovelace <ada@example.com>",
            "user": {"display_name": "Ada Lovelace", "type": "user", "nickname": "ada"},
        },
        "message": message,
        "summary": {"raw": message, "markup": "markdown", "type": "rendered"},
        "date": "2026-11-29T08:00:00+00:00",
        "parents": [{"type": "commit", "hash": BEFORE}],
        "links": {"html": {"href": f"https://bitbucket.org/{full_name}/commits/{sha}"}},
    }


def bitbucket_change(
    kind: str, name: str, sha: str | None, *, message: str = "Update Dockerfile\n", full_name: str
) -> dict[str, Any]:
    """One ``push.changes[]`` entry; ``sha`` None deletes the branch or tag."""
    old = {"type": kind, "name": name, "target": _bitbucket_target(BEFORE, "old\n", full_name)}
    new = None
    if sha is not None:
        new = {"type": kind, "name": name, "target": _bitbucket_target(sha, message, full_name)}
        if kind == "tag":
            new["message"] = f"Release {name}\n"
    return {
        "new": new,
        "old": old,
        "created": False,
        "forced": False,
        "closed": sha is None,
        "truncated": False,
        "commits": [] if new is None else [new["target"]],
        "links": {"html": {"href": f"https://bitbucket.org/{full_name}/branches/compare"}},
    }


def bitbucket_push(changes: list[dict[str, Any]], *, full_name: str = "acme/app") -> dict[str, Any]:
    """A ``repo:push`` event with several changes."""
    workspace, slug = full_name.split("/")
    return {
        "push": {"changes": changes},
        "actor": {"display_name": "Ada Lovelace", "type": "user", "nickname": "ada"},
        "repository": {
            "type": "repository",
            "full_name": full_name,
            "name": slug,
            "scm": "git",
            "is_private": True,
            "uuid": "{730ede8d-c0de-4f85-aef1-133881a9624f}",
            "links": {
                "html": {"href": f"https://bitbucket.org/{full_name}"},
                "self": {"href": f"https://api.bitbucket.org/2.0/repositories/{full_name}"},
            },
            "workspace": {"slug": workspace, "type": "workspace"},
        },
    }


def gitlab_push(
    ref: str = "refs/heads/main",
    after: str = AFTER,
    *,
    checkout_sha: str | None = None,
    message: str = "Update Dockerfile\n",
    path: str = "acme/app",
    base: str = "https://gitlab.com",
) -> dict[str, Any]:
    """A ``Push Hook`` (``refs/heads/*``) or ``Tag Push Hook`` (``refs/tags/*``) payload.

    ``after`` of the zero commit deletes the ref (``checkout_sha`` null). Tag pushes carry no
    commits and the tag's message; ``checkout_sha`` is then the commit the tag points to.
    """
    deleted = after == ZERO
    is_tag = ref.startswith("refs/tags/")
    sha = None if deleted else (checkout_sha or after)
    commits = []
    if sha is not None and not is_tag:
        commits = [
            {
                "id": sha,
                "message": message,
                "title": message.splitlines()[0],
                "timestamp": "2026-11-29T08:00:00+00:00",
                "url": f"{base}/{path}/-/commit/{sha}",
                "author": {"name": "Ada Lovelace", "email": "ada@example.com"},
                "added": ["Dockerfile"],
                "modified": [],
                "removed": [],
            }
        ]
    project = {
        "id": 15,
        "name": path.split("/")[-1],
        "web_url": f"{base}/{path}",
        "git_ssh_url": f"git@{base.split('://')[1]}:{path}.git",
        "git_http_url": f"{base}/{path}.git",
        "namespace": path.split("/")[0],
        "visibility_level": 0,
        "path_with_namespace": path,
        "default_branch": "main",
        "homepage": f"{base}/{path}",
        "url": f"git@{base.split('://')[1]}:{path}.git",
        "http_url": f"{base}/{path}.git",
    }
    return {
        "object_kind": "tag_push" if is_tag else "push",
        "event_name": "tag_push" if is_tag else "push",
        "before": BEFORE,
        "after": after,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": sha,
        "message": "Release notes" if is_tag else None,
        "user_id": 4,
        "user_name": "Ada Lovelace",
        "user_username": "ada",
        "user_email": "",
        "project_id": 15,
        "project": project,
        "commits": commits,
        "total_commits_count": len(commits),
        "repository": {
            "name": project["name"],
            "url": project["url"],
            "description": "",
            "homepage": project["homepage"],
            "git_http_url": project["git_http_url"],
            "git_ssh_url": project["git_ssh_url"],
            "visibility_level": 0,
        },
    }


def encode(payload: dict[str, Any]) -> bytes:
    """The body as providers send it (compact JSON, UTF-8)."""
    return json.dumps(payload, separators=(",", ":")).encode()


def signature(secret: bytes, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256>``, computed independently of the code under test."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def github_headers(
    event: str, body: bytes, secret: bytes | None, delivery: str = ""
) -> dict[str, str]:
    """Headers of a GitHub delivery (unsigned when ``secret`` is None)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/6ec0a3a",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "30",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = signature(secret, body)
    return headers


def bitbucket_headers(body: bytes, secret: bytes | None, delivery: str = "") -> dict[str, str]:
    """Headers of a Bitbucket Cloud ``repo:push`` delivery."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Bitbucket-Webhooks/2.0",
        "X-Event-Key": "repo:push",
        "X-Request-UUID": delivery or str(uuid.uuid4()),
        "X-Hook-UUID": "{d0a2ae7c-1c1a-4b62-9a5a-2d2f0a4a7e33}",
        "X-Attempt-Number": "1",
    }
    if secret is not None:
        headers["X-Hub-Signature"] = signature(secret, body)
    return headers


def gitlab_headers(event: str, token: str | None, delivery: str = "") -> dict[str, str]:
    """Headers of a GitLab delivery (``Push Hook`` / ``Tag Push Hook``)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.6.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4()),
        "X-Gitlab-Webhook-UUID": "2d3bd2c4-5bf8-4ff2-9d1d-3b0a5f4f1c11",
        "X-Gitlab-Instance": "https://gitlab.com",
    }
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


def every_provider_headers(event: str, proof: str) -> dict[str, str]:
    """The event and proof headers of every provider at once, set to ``event`` and ``proof``:
    one fuzzed request then meets each provider's checks."""
    return {
        "X-GitHub-Event": event,
        "X-Event-Key": event,
        "X-Gitlab-Event": event,
        "X-Hub-Signature-256": proof,
        "X-Hub-Signature": proof,
        "X-Gitlab-Token": proof,
    }
