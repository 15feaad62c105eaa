"""The Kaniko Job renderer: every flag, label and safety setting of the Job."""

from __future__ import annotations

from typing import Any

import pytest
from factories import COMMIT, OTHER_COMMIT, automated_build

from autobuild.api.models import AutomatedBuild, Trigger
from autobuild.planning import job as jobs
from autobuild.planning.planner import PlannedBuild, PushEvent, plan_builds
from autobuild.settings import DEFAULT_EXECUTOR_IMAGE, BuildSettings

SETTINGS = BuildSettings()


def only_build(
    ab: AutomatedBuild, ref: str = "main", commit: str = COMMIT, **event: Any
) -> PlannedBuild:
    plan = plan_builds(ab.spec, PushEvent.parse(ref, commit, **event))
    assert len(plan.builds) == 1, plan
    return plan.builds[0]


def render(
    ab: AutomatedBuild, ref: str = "main", settings: BuildSettings = SETTINGS, **event: Any
) -> dict[str, Any]:
    return jobs.render_job(ab, only_build(ab, ref, **event), settings)


def container(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


def args(job: dict[str, Any]) -> list[str]:
    return list(container(job)["args"])


def test_job_basics() -> None:
    job = render(automated_build(tags=[{"source": "main", "dockerTag": "latest"}], timeout="30m"))
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    assert job["metadata"]["namespace"] == "ci"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 1800
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    kaniko = container(job)
    assert kaniko["image"] == DEFAULT_EXECUTOR_IMAGE
    assert kaniko["terminationMessagePath"] == "/dev/termination-log"
    assert kaniko["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_kaniko_arguments_exactly() -> None:
    ab = automated_build(
        tags=[{"source": "/^v([0-9.]+)$/", "sourceType": "Tag", "dockerTag": "{\\1},latest"}],
        buildArgs={"ZED": "z", "ALPHA": "a b"},
    )
    job = render(ab, "refs/tags/v2.1", message="Release 2.1\n\nNotes")
    repo = "docker.io/acme/dockertext-cavityflow"
    assert args(job) == [
        f"--context=git://github.com/acme/dockertext-cavityflow.git#refs/tags/v2.1#{COMMIT}",
        "--git=recurse-submodules=true",
        "--dockerfile=Dockerfile",
        f"--destination={repo}:2.1",
        f"--destination={repo}:latest",
        "--digest-file=/dev/termination-log",
        "--snapshot-mode=redo",
        "--push-retry=2",
        "--cache=true",
        "--cache-repo=docker.io/acme/dockertext-cavityflow-buildcache",
        "--cache-ttl=168h",
        "--build-arg=ALPHA=a b",
        "--build-arg=ZED=z",
        "--build-arg=SOURCE_BRANCH=v2.1",
        f"--build-arg=SOURCE_COMMIT={COMMIT}",
        "--build-arg=COMMIT_MSG=Release 2.1\n\nNotes",
        f"--build-arg=DOCKER_REPO={repo}",
        "--build-arg=DOCKERFILE_PATH=Dockerfile",
        "--build-arg=DOCKER_TAG=2.1",
        f"--build-arg=IMAGE_NAME={repo}:2.1",
        "--label=org.opencontainers.image.source=https://github.com/acme/dockertext-cavityflow.git",
        f"--label=org.opencontainers.image.revision={COMMIT}",
        "--label=org.opencontainers.image.description=Cavity flow solver",
    ]


def test_context_sub_path_and_dockerfile() -> None:
    ab = automated_build(
        tags=[
            {"source": "main", "context": "/services/api/", "dockerfile": "docker/Dockerfile.prod"}
        ]
    )
    assert "--context-sub-path=services/api" in args(render(ab))
    assert "--dockerfile=docker/Dockerfile.prod" in args(render(ab))
    assert "--build-arg=DOCKERFILE_PATH=docker/Dockerfile.prod" in args(render(ab))
    root = automated_build(tags=[{"source": "main", "context": "/"}])
    assert not any(a.startswith("--context-sub-path") for a in args(render(root)))


def test_no_cache_flags_without_build_cache() -> None:
    ab = automated_build(tags=[{"source": "main", "buildCache": False}])
    assert not any(a.startswith("--cache") for a in args(render(ab)))


def test_other_registry_cache_repo_and_insecure_flags() -> None:
    ab = automated_build()
    ab = ab.model_copy(
        update={
            "spec": ab.spec.model_copy(
                update={"image": ab.spec.image.model_copy(update={"registry": "127.0.0.1:5000"})}
            )
        }
    )
    # A base-image registry may be insecure too, not only the destination.
    settings = BuildSettings(insecure_registries=("127.0.0.1:5000", "mirror.local:8080"))
    rendered = args(render(ab, settings=settings))
    assert "--destination=127.0.0.1:5000/acme/dockertext-cavityflow:latest" in rendered
    assert "--cache-repo=127.0.0.1:5000/acme/dockertext-cavityflow/buildcache" in rendered
    insecure = [a for a in rendered if a.startswith(("--insecure", "--skip-tls"))]
    assert insecure == [
        "--insecure-registry=127.0.0.1:5000",
        "--skip-tls-verify-registry=127.0.0.1:5000",
        "--insecure-registry=mirror.local:8080",
        "--skip-tls-verify-registry=mirror.local:8080",
    ]
    assert not [a for a in args(render(ab)) if a.startswith(("--insecure", "--skip-tls"))]


@pytest.mark.parametrize(
    ("repo", "context", "pull_method"),
    [
        ("github.com/acme/app", "git://github.com/acme/app.git", None),
        ("github.com/acme/app.git", "git://github.com/acme/app.git", None),
        ("https://gitlab.com/group/sub/app.git", "git://gitlab.com/group/sub/app.git", None),
        ("https://gitea.local/acme/app", "git://gitea.local/acme/app", None),
        ("http://127.0.0.1:3000/acme/app.git", "git://127.0.0.1:3000/acme/app.git", "http"),
    ],
)
def test_git_context_and_pull_method(repo: str, context: str, pull_method: str | None) -> None:
    ab = automated_build(source={"repo": repo})
    job = render(ab)
    assert args(job)[0] == f"--context={context}#refs/heads/main#{COMMIT}"
    env = {e["name"]: e.get("value") for e in container(job)["env"]}
    assert env.get("GIT_PULL_METHOD") == pull_method


def _token_ref(secret: str = "linked-account") -> dict[str, Any]:
    return {"secretKeyRef": {"name": secret, "key": "token"}}


@pytest.mark.parametrize(
    ("source", "username"),
    [
        ({"repo": "github.com/acme/app"}, "x-access-token"),
        ({"repo": "git.acme.io/acme/app"}, "x-access-token"),
        ({"repo": "gitlab.com/acme/app"}, "oauth2"),
        ({"repo": "https://gitlab.acme.io/acme/app", "provider": "gitlab"}, "oauth2"),
        ({"repo": "bitbucket.org/acme/app"}, "x-token-auth"),
    ],
)
def test_git_credentials_are_username_and_password_from_the_secret(
    source: dict[str, str], username: str
) -> None:
    ab = automated_build(source={**source, "credentialsSecret": "linked-account"})
    assert container(render(ab))["env"] == [
        {"name": "GIT_USERNAME", "value": username},
        {"name": "GIT_PASSWORD", "valueFrom": _token_ref()},
    ]
    # Other keys of the Secret change nothing; only a `username` key does.
    job = jobs.render_job(ab, only_build(ab), SETTINGS, secret_keys={"token", "ca.crt"})
    assert container(job)["env"][0] == {"name": "GIT_USERNAME", "value": username}


@pytest.mark.parametrize("repo", ["github.com/acme/app", "http://gitea.local:3000/acme/app"])
def test_a_username_key_in_the_secret_is_passed_by_reference(repo: str) -> None:
    ab = automated_build(source={"repo": repo, "credentialsSecret": "gitea-link"})
    job = jobs.render_job(ab, only_build(ab), SETTINGS, secret_keys={"token", "username"})
    pull = [{"name": "GIT_PULL_METHOD", "value": "http"}] if repo.startswith("http:") else []
    assert container(job)["env"] == [
        *pull,
        {
            "name": "GIT_USERNAME",
            "valueFrom": {"secretKeyRef": {"name": "gitea-link", "key": "username"}},
        },
        {"name": "GIT_PASSWORD", "valueFrom": _token_ref("gitea-link")},
    ]


def test_no_credentials_without_secret() -> None:
    assert container(render(automated_build()))["env"] == []


def test_submodules_are_cloned_only_without_credentials() -> None:
    """Kaniko's go-git clones submodules with the repository's Basic auth, to any host a
    .gitmodules names (issue 17, item 10): with a token, no submodule is cloned."""
    public = automated_build()
    assert "--git=recurse-submodules=true" in args(render(public))
    private = automated_build(
        source={"repo": "github.com/acme/app", "credentialsSecret": "linked-account"}
    )
    assert container(render(private))["env"][-1]["name"] == "GIT_PASSWORD"
    assert not any(arg.startswith("--git=") for arg in args(render(private)))


def test_push_secret_is_mounted_as_docker_config() -> None:
    ab = automated_build(
        image={
            "namespace": "acme",
            "name": "app",
            "visibility": "Private",
            "shortDescription": "x",
            "pushSecret": "regcred",
        }
    )
    job = render(ab)
    assert container(job)["volumeMounts"] == [
        {"name": "docker-config", "mountPath": "/kaniko/.docker", "readOnly": True}
    ]
    assert job["spec"]["template"]["spec"]["volumes"] == [
        {
            "name": "docker-config",
            "secret": {
                "secretName": "regcred",
                "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
            },
        }
    ]
    without = render(automated_build())
    assert "volumes" not in without["spec"]["template"]["spec"]
    assert "volumeMounts" not in container(without)


def _image(**extra: str) -> dict[str, str]:
    return {
        "namespace": "team",
        "name": "app",
        "visibility": "Private",
        "shortDescription": "x",
        **extra,
    }


def test_ca_secret_is_mounted_and_named_for_its_registry_only() -> None:
    ab = automated_build(
        image=_image(registry="registry.corp:5443", pushSecret="regcred", caSecret="corp-ca")
    )
    job = render(ab)
    certificate = [a for a in args(job) if a.startswith("--registry-certificate")]
    assert certificate == ["--registry-certificate=registry.corp:5443=/kaniko/registry-ca/ca.crt"]
    # A private CA is never a reason to skip TLS verification.
    assert not [a for a in args(job) if a.startswith(("--insecure", "--skip-tls"))]
    assert container(job)["volumeMounts"] == [
        {"name": "docker-config", "mountPath": "/kaniko/.docker", "readOnly": True},
        {"name": "registry-ca", "mountPath": "/kaniko/registry-ca", "readOnly": True},
    ]
    assert job["spec"]["template"]["spec"]["volumes"] == [
        {
            "name": "docker-config",
            "secret": {
                "secretName": "regcred",
                "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
            },
        },
        {
            "name": "registry-ca",
            "secret": {"secretName": "corp-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
        },
    ]


def test_ca_secret_without_push_secret_and_docker_hub_name() -> None:
    only_ca = render(automated_build(image=_image(registry="127.0.0.1:5000", caSecret="ca")))
    assert container(only_ca)["volumeMounts"] == [
        {"name": "registry-ca", "mountPath": "/kaniko/registry-ca", "readOnly": True}
    ]
    assert "--registry-certificate=127.0.0.1:5000=/kaniko/registry-ca/ca.crt" in args(only_ca)
    # go-containerregistry calls Docker Hub index.docker.io; Kaniko looks the flag up by it.
    hub = render(automated_build(image=_image(registry="docker.io", caSecret="ca")))
    assert "--registry-certificate=index.docker.io=/kaniko/registry-ca/ca.crt" in args(hub)
    assert not [a for a in args(render(automated_build())) if "registry-certificate" in a]


def test_labels_annotations_and_owner() -> None:
    ab = automated_build(tags=[{"source": "main", "dockerTag": "latest,{sourceref}"}])
    job = render(ab)
    labels = job["metadata"]["labels"]
    build_id = labels["autobuild.dev/build-id"]
    assert labels == {
        "app.kubernetes.io/name": "autobuild",
        "app.kubernetes.io/component": "build",
        "app.kubernetes.io/managed-by": "autobuild",
        "autobuild.dev/automatedbuild": "cavityflow",
        "autobuild.dev/rule": "0",
        "autobuild.dev/commit": COMMIT,
        "autobuild.dev/trigger": "Push",
        "autobuild.dev/build-id": build_id,
        "autobuild.dev/uid": ab.metadata.uid,
    }
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert job["metadata"]["annotations"] == {
        "autobuild.dev/source-ref": "refs/heads/main",
        "autobuild.dev/commit": COMMIT,
        "autobuild.dev/tags": "latest,main",
    }
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "autobuild.dev/v1alpha1",
            "kind": "AutomatedBuild",
            "name": "cavityflow",
            "uid": ab.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert job["metadata"]["name"] == f"cavityflow-{COMMIT[:7]}-{build_id}"


def test_resources_and_executor_come_from_settings() -> None:
    settings = BuildSettings.from_env(
        {
            "AUTOBUILD_EXECUTOR_IMAGE": "registry.local/kaniko:v9@sha256:" + "a" * 64,
            "AUTOBUILD_CPU_REQUEST": "1",
            "AUTOBUILD_MEMORY_LIMIT": "8Gi",
            "AUTOBUILD_EPHEMERAL_STORAGE_LIMIT": "30Gi",
            "AUTOBUILD_PUSH_RETRY": "5",
            "AUTOBUILD_NODE_SELECTOR": "builder=true, zone=a",
        }
    )
    job = render(automated_build(), settings=settings)
    assert container(job)["image"] == "registry.local/kaniko:v9@sha256:" + "a" * 64
    assert container(job)["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "30Gi"},
    }
    assert "--push-retry=5" in args(job)
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"builder": "true", "zone": "a"}
    assert "nodeSelector" not in render(automated_build())["spec"]["template"]["spec"]


def test_job_name_is_deterministic_and_distinguishes_builds() -> None:
    ab = automated_build(tags=[{"source": "main"}, {"source": "/^ma/"}])
    builds = plan_builds(ab.spec, PushEvent.parse("main", COMMIT)).builds
    names = {jobs.build_identity(ab, b).job_name for b in builds}
    assert len(names) == 2
    again = plan_builds(ab.spec, PushEvent.parse("main", COMMIT)).builds
    assert {jobs.build_identity(ab, b).job_name for b in again} == names
    other_commit = plan_builds(ab.spec, PushEvent.parse("main", OTHER_COMMIT)).builds
    assert not names & {jobs.build_identity(ab, b).job_name for b in other_commit}
    manual_1 = only_build(automated_build(), trigger=Trigger.MANUAL, trigger_id="1")
    manual_2 = only_build(automated_build(), trigger=Trigger.MANUAL, trigger_id="2")
    assert jobs.build_identity(ab, manual_1) != jobs.build_identity(ab, manual_2)


def test_long_names_fit_63_characters() -> None:
    ab = automated_build()
    ab = ab.model_copy(
        update={"metadata": ab.metadata.model_copy(update={"name": "a" * 200 + ".b"})}
    )
    job = render(ab)
    assert len(job["metadata"]["name"]) <= 63
    assert len(job["metadata"]["labels"]["autobuild.dev/automatedbuild"]) <= 63


def test_build_pod_patch_merges_into_every_build_pod() -> None:
    patch = (
        '{"hostNetwork": true, "tolerations": [{"key": "autobuild.dev/real-node", '
        '"operator": "Exists", "effect": "NoSchedule"}], '
        '"nodeSelector": {"autobuild.dev/node": "real"}, "enableServiceLinks": null}'
    )
    settings = BuildSettings.from_env(
        {"AUTOBUILD_NODE_SELECTOR": "zone=a", "AUTOBUILD_BUILD_POD_PATCH": patch}
    )
    pod = render(automated_build(), settings=settings)["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["tolerations"] == [
        {"key": "autobuild.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
    ]
    # Objects merge key by key; null removes.
    assert pod["nodeSelector"] == {"zone": "a", "autobuild.dev/node": "real"}
    assert "enableServiceLinks" not in pod
    assert pod["containers"] == render(automated_build())["spec"]["template"]["spec"]["containers"]
    assert "hostNetwork" not in render(automated_build())["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not JSON"),
        ('["hostNetwork"]', "expected a JSON object"),
        ('{"containers": []}', "must not set containers"),
    ],
)
def test_build_pod_patch_rejects_bad_values(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BuildSettings.from_env({"AUTOBUILD_BUILD_POD_PATCH": raw})


def test_merge_patch_follows_rfc_7386() -> None:
    # The examples of RFC 7386, appendix A (a selection).
    assert jobs.merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert jobs.merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert jobs.merge_patch({"a": "b"}, {"a": None}) == {}
    assert jobs.merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert jobs.merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert jobs.merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    target = {"a": {"b": "c"}}
    jobs.merge_patch(target, {"a": {"b": "x"}})
    assert target == {"a": {"b": "c"}}
