"""The operator on the real control plane: Jobs, build tracking, triggers, policies, restarts.

Build pods are pinned (AUTOBUILD_NODE_SELECTOR) to a label no node has, so they stay Pending
until a test moves them itself, the way a kubelet would: deterministic phases, digests and
failures. The one end-to-end test labels kwok's node so kwok runs the pod to completion.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.support import webhook_payloads as hooks
from tests.support.crane import Crane
from tests.support.gitserver import GitServer, Repo
from tests.support.operator_process import BUILDER_LABEL, Operator, eventually, free_port
from tests.support.registry import Registry

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "c" * 64
# A push Secret for the (unused) registry the builds of these tests name.
DEFAULT_REGISTRY_AUTH = json.dumps({"auths": {"127.0.0.1:5000": {"auth": "dTpw"}}})
GROUP, VERSION, PLURAL = "autobuild.dev", "v1alpha1", "automatedbuilds"


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    """A real registry on loopback whose one user may push."""
    with Registry(users={"pusher": "right-password"}) as running:
        yield running


@pytest.fixture(scope="module")
def operator(
    k8s_cluster: Any, crd: None, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(
        k8s_cluster.kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        registry.host,
    )
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("git")) as server:
        yield server


@pytest.fixture
def repo(git_server: GitServer, request: pytest.FixtureRequest) -> Repo:
    name = request.node.name.lower().replace("_", "-")[:40].strip("-")
    created = git_server.create_repo("acme", name)
    created.commit("main", {"Dockerfile": "FROM scratch\nCOPY . /\n"}, "Initial commit")
    return created


def manifest(namespace: str, repo: Repo | str, name: str = "app", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AutomatedBuild",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "source": {"repo": repo if isinstance(repo, str) else repo.clone_url},
            "image": {
                "registry": "127.0.0.1:5000",
                "namespace": "acme",
                "name": name,
                "visibility": "Public",
                "shortDescription": "test image",
            },
            "tags": [{"source": "main", "dockerTag": "latest"}],
        },
    }
    body["spec"].update(spec)
    return body


class World:
    """Reads and moves the objects of one test namespace."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def get(self, name: str = "app") -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return found

    def status(self, name: str = "app") -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def jobs(self) -> list[Any]:
        return sorted(
            self.batch.list_namespaced_job(self.namespace).items,
            key=lambda j: j.metadata.creation_timestamp,
        )

    def pods(self, job_name: str) -> list[Any]:
        return self.core.list_namespaced_pod(
            self.namespace, label_selector=f"job-name={job_name}"
        ).items

    def push_secret(self, config: str, name: str = "regcred") -> None:
        """A kubernetes.io/dockerconfigjson Secret holding ``config``."""
        self.core.create_namespaced_secret(
            self.namespace,
            {
                "metadata": {"name": name},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": config},
            },
        )

    def wait_events(self, *reasons: str) -> list[Any]:
        """The AutomatedBuilds' Events once all ``reasons`` are among them: the operator posts
        Events after the status write they describe, so a test that saw the status waits."""

        def posted() -> list[Any]:
            events = [
                e
                for e in self.core.list_namespaced_event(self.namespace).items
                if e.involved_object.kind == "AutomatedBuild"
            ]
            return events if set(reasons) <= {e.reason for e in events} else []

        found: list[Any] = eventually(posted, 30, f"Events {reasons}")
        return found

    def builds(self, name: str = "app") -> list[dict[str, Any]]:
        return list(self.status(name).get("builds") or [])

    def finish_pod(
        self, job_name: str, exit_code: int, message: str = "", reason: str | None = None
    ) -> None:
        """Play kubelet: the build pod ran and ended."""
        pod = eventually(lambda: self.pods(job_name), 30, f"pod of {job_name}")[0]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        terminated = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "message": message,
            "startedAt": now,
            "finishedAt": now,
        }
        status = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": "kaniko",
                    "image": "kaniko",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        }
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})

    def run_pod(self, job_name: str) -> None:
        pod = eventually(lambda: self.pods(job_name), 30, f"pod of {job_name}")[0]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "kaniko",
                    "image": "kaniko",
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }
            ],
        }
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})


@pytest.fixture
def world(k8s_api: Any, k8s_namespace: str, operator: Operator) -> World:
    return World(k8s_api, k8s_namespace)


def build_phase(world: World, phase: str, index: int = 0) -> Callable[[], bool]:
    def check() -> bool:
        builds = world.builds()
        return len(builds) > index and builds[index]["phase"] == phase

    return check


def test_create_builds_main_with_exact_kaniko_args_and_records_success(
    world: World, repo: Repo, operator: Operator
) -> None:
    head = repo.heads()["refs/heads/main"]
    succeeded = ("autobuild_build_transitions_total", (("phase", "Succeeded"),))
    timed = ("autobuild_build_duration_seconds_count", (("phase", "Succeeded"),))
    before = operator.metrics()
    world.create(manifest(world.namespace, repo))
    (job,) = eventually(world.jobs, 30, "the creation build's Job")
    args = job.spec.template.spec.containers[0].args
    assert (
        args[0]
        == f"--context=git://{repo.clone_url.removeprefix('http://')}#refs/heads/main#{head}"
    )
    assert "--destination=127.0.0.1:5000/acme/app:latest" in args
    assert f"--build-arg=SOURCE_COMMIT={head}" in args
    assert job.metadata.owner_references[0].kind == "AutomatedBuild"
    assert job.spec.backoff_limit == 0
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["GIT_PULL_METHOD"] == "http"
    eventually(lambda: not job.spec.suspend or world.jobs()[0].spec.suspend is False, 30, "release")
    world.run_pod(job.metadata.name)
    eventually(build_phase(world, "Running"), 30, "Running")
    world.finish_pod(job.metadata.name, 0, DIGEST)
    eventually(build_phase(world, "Succeeded"), 60, "Succeeded")
    status = world.status()
    latest = status["latestBuild"]
    assert (latest["digest"], latest["shortCommit"], latest["tags"]) == (DIGEST, head[:7], "latest")
    assert status["observedGeneration"] == 1
    assert status["image"] == "127.0.0.1:5000/acme/app"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "BuildSucceeded")
    world.wait_events("BuildStarted", "BuildSucceeded")
    # The operator counted the build (builds of earlier tests in the module may count too).
    after = eventually(
        lambda: (found := operator.metrics())[succeeded] > before[succeeded] and found,
        30,
        "the Succeeded build in /metrics",
    )
    assert after[timed] > before[timed]
    assert after[("autobuild_builds", (("phase", "Succeeded"),))] >= 1
    assert after[("autobuild_reconcile_total", (("result", "success"),))] > 0
    assert ("autobuild_reconcile_errors_total", ()) in after
    healthy = {key[1]: v for key, v in after.items() if key[0] == "autobuild_informer_healthy"}
    assert healthy == {
        (("resource", name),): 1.0 for name in ("automatedbuilds", "secrets", "jobs", "pods")
    }


def test_failing_pod_is_classified_and_its_log_never_reaches_status_or_events(
    world: World, repo: Repo
) -> None:
    world.push_secret(
        json.dumps({"auths": {"127.0.0.1:5000": {"auth": "dTpzZWNyZXQtcHVzaC1wYXNzd29yZA=="}}})
    )
    body = manifest(world.namespace, repo)
    body["spec"]["image"]["pushSecret"] = "regcred"
    world.create(body)
    (job,) = eventually(world.jobs, 30, "Job")
    # Kaniko's log tail, as FallbackToLogsOnError puts it in the termination message.
    tail = (
        "error checking push permissions -- UNAUTHORIZED: dTpzZWNyZXQtcHVzaC1wYXNzd29yZA== refused"
    )
    world.finish_pod(job.metadata.name, 1, tail)
    eventually(build_phase(world, "Failed"), 60, "Failed")
    build = world.builds()[0]
    assert build["reason"] == "PushUnauthorized"
    assert "pushSecret" in build["message"]
    ready = next(c for c in world.status()["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "BuildFailed")
    events = world.wait_events("BuildFailed")
    written = json.dumps(world.status()) + " ".join(e.message for e in events)
    assert "dTpzZWNyZXQtcHVzaC1wYXNzd29yZA==" not in written
    assert "UNAUTHORIZED" not in written


def test_timeout_is_timed_out(world: World, repo: Repo) -> None:
    world.create(manifest(world.namespace, repo, timeout="1m"))
    (job,) = eventually(world.jobs, 30, "Job")
    assert job.spec.active_deadline_seconds == 60
    # Shorten the deadline as the Job controller allows, rather than wait a minute.
    eventually(lambda: world.jobs()[0].spec.suspend is False, 30, "release")
    world.batch.patch_namespaced_job(
        job.metadata.name, world.namespace, {"spec": {"activeDeadlineSeconds": 1}}
    )
    eventually(build_phase(world, "TimedOut"), 60, "TimedOut")
    assert world.builds()[0]["reason"] == "DeadlineExceeded"


def wait_triggers_handled(world: World) -> None:
    """Creation and every trigger request so far are acted on."""
    from autobuild.planning.triggers import ANNOTATION_TRIGGER, parse_requests

    def handled() -> bool:
        body = world.get()
        requests = parse_requests(
            (body["metadata"].get("annotations") or {}).get(ANNOTATION_TRIGGER)
        )
        wanted = requests[-1].id if requests else "create"
        return ((body.get("status") or {}).get("lastTrigger") or {}).get("id") == wanted

    eventually(handled, 30, "earlier triggers handled")


def trigger(k8s_cluster: Any, world: World, *extra: str) -> str:
    wait_triggers_handled(world)
    result = subprocess.run(
        [sys.executable, "-m", "autobuild.cli", "trigger", "app", "-n", world.namespace, *extra],
        env=dict(os.environ, KUBECONFIG=str(k8s_cluster.kubeconfig)),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def test_serial_queues_and_manual_triggers(world: World, repo: Repo, k8s_cluster: Any) -> None:
    world.create(manifest(world.namespace, repo, runPolicy="Serial"))
    (first,) = eventually(world.jobs, 30, "creation build")
    second_commit = repo.commit("main", {"a.txt": "2"}, "Second")
    trigger(k8s_cluster, world)
    eventually(lambda: len(world.jobs()) == 2, 30, "second Job")
    eventually(build_phase(world, "Queued", 0), 30, "second build queued")

    def newest() -> Any:
        return next(j for j in world.jobs() if j.metadata.name != first.metadata.name)

    assert newest().spec.suspend is True
    assert second_commit in newest().spec.template.spec.containers[0].args[0]
    assert world.builds()[0]["trigger"] == "Manual"
    world.finish_pod(first.metadata.name, 0, DIGEST)
    eventually(lambda: newest().spec.suspend is False, 60, "queued build released")
    eventually(
        lambda: [b["phase"] for b in world.builds()] == ["Pending", "Succeeded"], 30, "phases"
    )


def test_serial_latest_only_cancels_older_queued(
    world: World, repo: Repo, k8s_cluster: Any
) -> None:
    world.create(manifest(world.namespace, repo, runPolicy="SerialLatestOnly"))
    eventually(world.jobs, 30, "creation build")
    for n in range(2):
        repo.commit("main", {"n.txt": str(n)}, f"change {n}")
        trigger(k8s_cluster, world)
        eventually(lambda n=n: len(world.jobs()) == n + 2, 30, "queued Job")
    eventually(
        lambda: [b["phase"] for b in world.builds()] == ["Queued", "Cancelled", "Pending"],
        60,
        "older queued build cancelled",
    )


def test_parallel_runs_all_and_cancel(world: World, repo: Repo, k8s_cluster: Any) -> None:
    world.create(
        manifest(
            world.namespace,
            repo,
            runPolicy="Parallel",
            tags=[
                {"source": "main", "dockerTag": "latest"},
                {"source": "/^ma/", "dockerTag": "edge"},
            ],
        )
    )
    eventually(lambda: len(world.jobs()) == 2, 30, "two Jobs")
    assert all(job.spec.suspend in (None, False) for job in world.jobs())
    build_id = world.jobs()[0].metadata.labels["autobuild.dev/build-id"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "autobuild.cli",
            "cancel",
            "app",
            "-n",
            world.namespace,
            "--build",
            build_id,
        ],
        env=dict(os.environ, KUBECONFIG=str(k8s_cluster.kubeconfig)),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert f"build {build_id} cancelled" in result.stdout
    eventually(
        lambda: {b["id"]: b["phase"] for b in world.builds()}.get(build_id) == "Cancelled",
        30,
        "Cancelled",
    )


def test_history_limit_prunes_jobs_and_records(world: World, repo: Repo, k8s_cluster: Any) -> None:
    world.create(
        manifest(
            world.namespace, repo, runPolicy="Parallel", historyLimit={"succeeded": 1, "failed": 1}
        )
    )
    done: set[str] = set()
    for n in range(3):
        job = eventually(
            lambda: next((j for j in world.jobs() if j.metadata.name not in done), None),
            30,
            "new Job",
        )
        world.finish_pod(job.metadata.name, 0, DIGEST)
        done.add(job.metadata.name)
        eventually(
            lambda name=job.metadata.name: any(
                b["jobName"] == name and b["phase"] == "Succeeded" for b in world.builds()
            ),
            60,
            "Succeeded",
        )
        if n < 2:
            repo.commit("main", {"n.txt": str(n)}, f"change {n}")
            trigger(k8s_cluster, world)
    eventually(lambda: len(world.jobs()) == 1 and len(world.builds()) == 1, 60, "pruned to one")
    assert world.jobs()[0].metadata.name == job.metadata.name


def test_missing_secret_is_stalled_then_recovers(world: World, repo: Repo) -> None:
    body = manifest(world.namespace, repo)
    body["spec"]["image"]["pushSecret"] = "regcred"
    world.create(body)
    condition = eventually(lambda: stalled_condition(world), 30, "Stalled")
    assert condition["reason"] == "SecretNotFound"
    # Retrying is the operator's business: no finalizer or kopf state lands in the object.
    metadata = world.get()["metadata"]
    assert not metadata.get("finalizers")
    assert not [k for k in metadata.get("annotations") or {} if "kopf" in k or "last-handled" in k]
    assert "spec.image.pushSecret" in condition["message"]
    assert world.jobs() == []
    world.push_secret(DEFAULT_REGISTRY_AUTH)
    eventually(world.jobs, 60, "build after the Secret appeared")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"image": {"visibility": "Secret"}}, "spec.image.visibility"),
        ({"image": {"shortDescription": "x" * 101}}, "spec.image.shortDescription"),
        (
            {"tags": [{"source": "main", "dockerfile": "../../etc/passwd"}]},
            "must not escape the repository",
        ),
        ({"tags": [{"source": "main", "dockerfile": "/etc/passwd"}]}, "must be relative"),
        ({"tags": [{"source": "main#x"}]}, "spec.tags[0].source"),
        ({"tags": [{"source": "main", "dockerTag": "{\\1}"}]}, "need a /regex/ source"),
        ({"source": {"repo": "--upload-pack=touch /tmp/pwned"}}, "spec.source.repo"),
        ({"timeout": "10s"}, "must be between 1m and 24h"),
        ({"buildArgs": {"SOURCE_COMMIT": "x"}}, "cannot be overridden"),
    ],
)
def test_invalid_spec_rejected_by_the_api_server(
    world: World, repo: Repo, change: dict[str, Any], words: str
) -> None:
    body = manifest(world.namespace, repo)
    for key, value in change.items():
        if isinstance(value, dict) and key in body["spec"]:
            body["spec"][key].update(value)
        else:
            body["spec"][key] = value
    with pytest.raises(client.ApiException) as caught:
        world.create(body)
    assert caught.value.status == 422
    assert words in json.loads(caught.value.body)["message"]


def test_spec_the_crd_cannot_judge_is_stalled(world: World, repo: Repo) -> None:
    body = manifest(world.namespace, repo, tags=[{"source": "/^v(?=1)/", "dockerTag": "x"}])
    world.create(body)

    def reason() -> str | None:
        conditions = {c["type"]: c for c in world.status().get("conditions") or []}
        stalled = conditions.get("Stalled", {})
        return stalled.get("message") if stalled.get("status") == "True" else None

    assert "spec.tags[0].source" in eventually(reason, 30, "Stalled InvalidSpec")


def test_restart_mid_build_keeps_records_and_idle_restart_writes_nothing(
    world: World, repo: Repo, operator: Operator
) -> None:
    world.create(manifest(world.namespace, repo))
    (job,) = eventually(world.jobs, 30, "Job")
    eventually(build_phase(world, "Pending"), 30, "Pending")
    operator.stop()
    world.finish_pod(job.metadata.name, 0, DIGEST)
    time.sleep(1)
    operator.start()
    eventually(build_phase(world, "Succeeded"), 60, "Succeeded after restart")
    assert len(world.jobs()) == 1
    before = world.get()["metadata"]["resourceVersion"]
    operator.stop()
    operator.start()
    time.sleep(5)
    assert world.get()["metadata"]["resourceVersion"] == before
    assert len(world.jobs()) == 1


def test_kubectl_get_columns(world: World, repo: Repo, k8s_cluster: Any) -> None:
    world.create(manifest(world.namespace, repo))
    (job,) = eventually(world.jobs, 30, "Job")
    world.finish_pod(job.metadata.name, 0, DIGEST)
    eventually(build_phase(world, "Succeeded"), 60, "Succeeded")
    for name in ("autobuilds", "ab", "automatedbuilds", "autobuild"):
        out = k8s_cluster.kubectl("get", name, "-n", world.namespace).stdout
        assert out.split("\n")[0].split() == [
            "NAME",
            "REPO",
            "IMAGE",
            "VISIBILITY",
            "PHASE",
            "COMMIT",
            "READY",
            "AGE",
        ]
        assert "Succeeded" in out
    wide = k8s_cluster.kubectl("get", "ab", "-n", world.namespace, "-o", "wide").stdout
    assert DIGEST in wide
    assert "latest" in wide


def test_state_annotations_hold_no_secret(world: World, repo: Repo) -> None:
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {"name": "link", "annotations": {"autobuild.dev/git-hosts": "127.0.0.1"}},
            "stringData": {"token": "s3cr3t-token-value"},
        },
    )
    body = manifest(world.namespace, repo)
    body["spec"]["source"]["credentialsSecret"] = "link"
    world.create(body)
    eventually(world.jobs, 30, "Job")
    dumped = json.dumps(world.get()) + json.dumps([j.to_dict() for j in world.jobs()], default=str)
    assert "s3cr3t-token-value" not in dumped


def test_probes_and_json_logs(operator: Operator) -> None:
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.port}{path}", timeout=2) as answer:
            assert answer.status == 200
    lines = [line for line in operator.log.read_text().splitlines() if line.startswith("{")]
    assert lines, "no JSON log line"
    record = json.loads(lines[-1])
    assert {"message", "severity", "timestamp"} <= record.keys()


def stalled_condition(world: World, name: str = "app") -> dict[str, Any] | None:
    """The Stalled condition while it is True."""
    conditions = world.status(name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Stalled" and c["status"] == "True"), None)


def ready_condition(world: World) -> dict[str, Any] | None:
    return next((c for c in world.status().get("conditions") or [] if c["type"] == "Ready"), None)


def test_unreachable_source_is_not_ready_but_not_stalled(world: World) -> None:
    body = manifest(world.namespace, f"http://127.0.0.1:{free_port()}/acme/gone.git")
    world.create(body)
    ready = eventually(
        lambda: (c := ready_condition(world)) and c["status"] == "False" and c, 30, "not Ready"
    )
    assert ready["reason"] == "SourceUnreachable"
    stalled = next(c for c in world.status()["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "False"


def test_source_reachability_is_checked_and_recovers(world: World, git_server: GitServer) -> None:
    """Even with nothing to build, a spec change checks that the repository answers."""
    url = f"{git_server.url}/acme/not-yet-{world.namespace}.git"
    world.create(manifest(world.namespace, url, tags=[{"source": "main", "autobuild": False}]))
    ready = eventually(
        lambda: (c := ready_condition(world)) and c["status"] == "False" and c, 30, "not Ready"
    )
    assert ready["reason"] == "SourceUnreachable"
    assert "not found" in ready["message"]
    created = git_server.create_repo("acme", f"not-yet-{world.namespace}")
    created.commit("main", {"Dockerfile": "FROM scratch\n"}, "init")
    ready = eventually(
        lambda: (c := ready_condition(world)) and c["status"] == "True" and c,
        60,
        "Ready after the repo appeared",
    )
    assert world.jobs() == []


def test_trigger_with_ref_and_commit_needs_no_git_host(world: World, k8s_cluster: Any) -> None:
    body = manifest(world.namespace, f"http://127.0.0.1:{free_port()}/acme/gone.git")
    body["spec"]["tags"] = [
        {"sourceType": "Tag", "source": "/^v([0-9.]+)$/", "dockerTag": "{\\1}", "autobuild": False}
    ]
    world.create(body)
    eventually(lambda: ready_condition(world), 30, "first visit")
    commit = "ab" * 20
    trigger(k8s_cluster, world, "--ref", "refs/tags/v2.5", "--commit", commit)
    (job,) = eventually(world.jobs, 30, "Job for the given commit")
    args = job.spec.template.spec.containers[0].args
    assert args[0].endswith(f"#refs/tags/v2.5#{commit}")
    assert "--destination=127.0.0.1:5000/acme/app:2.5" in args


def last_trigger(world: World) -> dict[str, Any]:
    return dict(world.status().get("lastTrigger") or {})


def test_bad_trigger_request_is_reported_and_the_next_one_still_builds(
    world: World, repo: Repo, k8s_cluster: Any
) -> None:
    world.create(manifest(world.namespace, repo))
    eventually(world.jobs, 30, "creation build")
    wait_triggers_handled(world)
    value = json.dumps([{"id": "20261129T000000.000000Z-bad", "ref": "refs/heads/a b"}])
    k8s_cluster.kubectl(
        "annotate", "-n", world.namespace, "ab/app", f"autobuild.dev/trigger={value}", "--overwrite"
    )
    handled = eventually(
        lambda: (t := last_trigger(world)).get("reason") == "InvalidTrigger" and t,
        30,
        "InvalidTrigger",
    )
    assert "not a safe git ref name" in handled["message"]
    world.wait_events("InvalidTrigger")
    trigger(k8s_cluster, world)
    eventually(lambda: len(world.jobs()) == 2, 30, "a later trigger builds")


def test_cli_refuses_triggers_that_would_build_nothing(
    world: World, repo: Repo, k8s_cluster: Any
) -> None:
    world.create(manifest(world.namespace, repo, tags=[{"source": "/^rel/", "dockerTag": "x"}]))
    eventually(lambda: ready_condition(world), 30, "first visit")
    result = autobuild_cli(k8s_cluster, "trigger", "app", "-n", world.namespace)
    assert result.returncode == 1
    assert "--ref" in result.stderr
    result = autobuild_cli(
        k8s_cluster, "trigger", "app", "-n", world.namespace, "--commit", "ab" * 20
    )
    assert result.returncode == 1
    assert "--commit needs --ref" in result.stderr
    assert "autobuild.dev/trigger" not in (world.get()["metadata"].get("annotations") or {})


def test_quick_triggers_all_build(world: World, repo: Repo, k8s_cluster: Any) -> None:
    """Two triggers in a row, without waiting: each is a request of its own."""
    world.create(manifest(world.namespace, repo, runPolicy="Parallel"))
    eventually(world.jobs, 30, "creation build")
    wait_triggers_handled(world)
    for _ in range(2):
        result = autobuild_cli(k8s_cluster, "trigger", "app", "-n", world.namespace)
        assert result.returncode == 0, result.stderr
    eventually(lambda: len(world.jobs()) == 3, 30, "one build per trigger")
    assert sorted(b["trigger"] for b in world.builds()) == ["Create", "Manual", "Manual"]


def test_serial_latest_only_never_cancels_another_rule(
    world: World, repo: Repo, k8s_cluster: Any
) -> None:
    tags = [{"source": "main", "dockerTag": "latest"}, {"source": "/^ma/", "dockerTag": "edge"}]
    world.create(
        manifest(
            world.namespace,
            repo,
            runPolicy="SerialLatestOnly",
            tags=[{**t, "autobuild": False} for t in tags],
        )
    )
    eventually(lambda: ready_condition(world), 30, "first visit")
    trigger(k8s_cluster, world, "--ref", "main")
    eventually(lambda: len(world.builds()) == 2, 30, "both rules build")
    eventually(
        lambda: sorted(b["phase"] for b in world.builds()) == ["Pending", "Pending"],
        30,
        "both released, none cancelled",
    )
    assert sorted(b["tags"][0] for b in world.builds()) == ["edge", "latest"]


def test_operator_survives_an_api_server_restart(
    world: World, repo: Repo, k8s_cluster: Any, k8s_api: Any
) -> None:
    if k8s_cluster.local is None:
        pytest.skip("needs a cluster this session started (not AUTOBUILD_KUBECONFIG)")
    world.create(manifest(world.namespace, repo, runPolicy="Parallel"))
    (job,) = eventually(world.jobs, 30, "creation build")
    k8s_cluster.local.restart("kube-apiserver", down_seconds=3)
    world.finish_pod(job.metadata.name, 0, DIGEST)
    eventually(build_phase(world, "Succeeded"), 90, "Succeeded after the outage")
    repo.commit("main", {"after.txt": "1"}, "after the outage")
    trigger(k8s_cluster, world)
    eventually(lambda: len(world.jobs()) == 2, 60, "a build triggered after the outage")


@contextlib.contextmanager
def service_account_kubeconfig(k8s_cluster: Any, where: Path, *more_rbac: Path) -> Iterator[Path]:
    """A kubeconfig with a real token of the operator's ServiceAccount, bound by the shipped
    manifests/base/rbac.yaml (and ``more_rbac``) only; the RBAC objects are deleted after (the
    Helm tests install their own, and Helm refuses objects it does not own)."""
    files = [ROOT / "manifests" / "base" / "rbac.yaml", *more_rbac]
    try:
        for rbac in files:
            k8s_cluster.kubectl("apply", "-f", str(rbac))
        token = k8s_cluster.kubectl(
            "create", "token", "autobuild-operator", "-n", "autobuild-system", "--duration=1h"
        ).stdout.strip()
        config = yaml.safe_load(Path(k8s_cluster.kubeconfig).read_text())
        config["users"] = [{"name": config["users"][0]["name"], "user": {"token": token}}]
        limited = where / "operator-kubeconfig"
        limited.write_text(yaml.safe_dump(config))
        yield limited
    finally:
        # Not the Namespace: deleting it takes a while, and the Helm tests install into it.
        for rbac in reversed(files):
            for doc in yaml.safe_load_all(rbac.read_text()):
                if doc and doc["kind"] != "Namespace":
                    meta = doc["metadata"]
                    where = ["-n", meta["namespace"]] if "namespace" in meta else []
                    k8s_cluster.kubectl(
                        "delete", "--ignore-not-found", doc["kind"], meta["name"], *where
                    )


def test_the_shipped_rbac_is_enough(
    world: World, repo: Repo, k8s_cluster: Any, operator: Operator, tmp_path: Path
) -> None:
    """The operator runs with only manifests/base/rbac.yaml's ClusterRole, through a real token."""
    operator.stop()
    with contextlib.ExitStack() as stack:
        limited = stack.enter_context(service_account_kubeconfig(k8s_cluster, tmp_path))
        stack.callback(operator.start)
        restricted = Operator(limited, tmp_path / "restricted.log", operator.registry)
        stack.callback(restricted.stop)
        restricted.start()
        world.push_secret(DEFAULT_REGISTRY_AUTH)
        body = manifest(
            world.namespace,
            repo,
            runPolicy="SerialLatestOnly",
            historyLimit={"succeeded": 0, "failed": 1},
        )
        body["spec"]["image"]["pushSecret"] = "regcred"
        world.create(body)
        (job,) = eventually(world.jobs, 30, "creation build")
        world.run_pod(job.metadata.name)
        eventually(build_phase(world, "Running"), 30, "Running")
        world.finish_pod(job.metadata.name, 0, DIGEST)
        eventually(build_phase(world, "Succeeded"), 60, "Succeeded")
        world.wait_events("BuildStarted", "BuildSucceeded")
        repo.commit("main", {"b.txt": "2"}, "second")
        trigger(k8s_cluster, world)
        # historyLimit 0 prunes the first Job as soon as the second exists: wait for what
        # must hold (a second Job), not for the moment when both exist.
        second = eventually(
            lambda: next((j for j in world.jobs() if j.metadata.name != job.metadata.name), None),
            30,
            "second Job",
        )
        world.finish_pod(second.metadata.name, 0, DIGEST)
        eventually(
            lambda: [j.metadata.name for j in world.jobs()] == [second.metadata.name],
            60,
            "the older succeeded Job pruned (historyLimit 0 keeps only the newest)",
        )
    # RBAC denials read 'User "system:serviceaccount:..." cannot VERB resource ...'.
    assert "cannot " not in restricted.log.read_text()


def autobuild_cli(k8s_cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autobuild.cli", *args],
        env=dict(os.environ, KUBECONFIG=str(k8s_cluster.kubeconfig)),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_logs_explains_what_it_cannot_show(world: World, repo: Repo, k8s_cluster: Any) -> None:
    world.create(manifest(world.namespace, repo, tags=[{"source": "main", "autobuild": False}]))
    eventually(lambda: ready_condition(world), 30, "first visit")
    result = autobuild_cli(k8s_cluster, "logs", "app", "-n", world.namespace)
    assert (result.returncode, result.stderr.strip()) == (
        1,
        "autobuild: AutomatedBuild app has no builds yet",
    )
    trigger(k8s_cluster, world)
    (job,) = eventually(world.jobs, 30, "manual build")
    eventually(lambda: world.pods(job.metadata.name), 30, "its pod")
    result = autobuild_cli(k8s_cluster, "logs", "app", "-n", world.namespace)
    assert result.returncode == 1
    assert f"build Job {job.metadata.name} has not started yet (Pending)" in result.stderr
    result = autobuild_cli(k8s_cluster, "logs", "app", "-n", world.namespace, "--build", "nope")
    assert (result.returncode, result.stderr.strip()) == (1, "autobuild: no build 'nope'")
    result = autobuild_cli(k8s_cluster, "logs", "missing", "-n", world.namespace)
    assert "AutomatedBuild " + world.namespace + "/missing not found" in result.stderr


def test_logs_passes_on_the_kubelets_answer(world: World, repo: Repo, k8s_cluster: Any) -> None:
    """On kwok's node the build really starts; kwok serves no kubelet log endpoint, so the API
    server's error reaches the user as a message, not a traceback."""
    nodes = world.core.list_node().items
    node = next(n.metadata.name for n in nodes if "kwok" in n.metadata.name)
    label = "=".join(BUILDER_LABEL)
    k8s_cluster.kubectl("label", "node", node, label, "--overwrite")
    try:
        world.create(manifest(world.namespace, repo))
        (job,) = eventually(world.jobs, 30, "Job")
        eventually(
            lambda: any(p.spec.node_name for p in world.pods(job.metadata.name)), 30, "scheduled"
        )
        eventually(
            lambda: any(
                c.state.running or c.state.terminated
                for p in world.pods(job.metadata.name)
                for c in p.status.container_statuses or []
            ),
            30,
            "started by kwok",
        )
        result = autobuild_cli(k8s_cluster, "logs", "app", "-n", world.namespace)
        assert result.returncode == 1
        assert f"cannot read the log of build Job {job.metadata.name}" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        k8s_cluster.kubectl("label", "node", node, BUILDER_LABEL[0] + "-")


def test_private_repo_heads_resolve_with_the_linked_token(
    world: World, git_server: GitServer
) -> None:
    private = git_server.create_repo(
        "acme", f"private-{world.namespace}", private_token="linked-t0ken"
    )
    head = private.commit("main", {"Dockerfile": "FROM scratch\n"}, "init")
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {"name": "link", "annotations": {"autobuild.dev/git-hosts": "127.0.0.1"}},
            "stringData": {"token": "wrong-token"},
        },
    )
    body = manifest(world.namespace, private)
    body["spec"]["source"]["credentialsSecret"] = "link"
    world.create(body)
    ready = eventually(
        lambda: (c := ready_condition(world)) and c["status"] == "False" and c, 30, "not Ready"
    )
    assert ready["reason"] == "SourceUnreachable"
    assert "authentication failed" in ready["message"]
    assert "wrong-token" not in json.dumps(world.get())
    world.core.patch_namespaced_secret(
        "link", world.namespace, {"stringData": {"token": "linked-t0ken"}}
    )
    (job,) = eventually(world.jobs, 60, "the creation build once the token is right")
    container = job.spec.template.spec.containers[0]
    assert container.args[0].endswith(f"#refs/heads/main#{head}")
    env = {e.name: e for e in container.env}
    assert "GIT_TOKEN" not in env
    assert env["GIT_USERNAME"].value == "x-access-token"
    assert env["GIT_PASSWORD"].value is None
    assert env["GIT_PASSWORD"].value_from.secret_key_ref.name == "link"
    assert env["GIT_PASSWORD"].value_from.secret_key_ref.key == "token"


def test_credentials_go_only_to_the_hosts_their_secret_names(
    world: World, git_server: GitServer
) -> None:
    """No confused deputy: a Secret must opt in to the host, and a token never travels over
    plain http to a host that is not in AUTOBUILD_INSECURE_GIT_HOSTS."""
    private = git_server.create_repo("acme", f"deputy-{world.namespace}", private_token="t0ken-x")
    private.commit("main", {"Dockerfile": "FROM scratch\n"}, "init")
    world.core.create_namespaced_secret(
        world.namespace, {"metadata": {"name": "link"}, "stringData": {"token": "t0ken-x"}}
    )
    body = manifest(world.namespace, private)
    body["spec"]["source"]["credentialsSecret"] = "link"
    world.create(body)
    stalled = eventually(lambda: stalled_condition(world), 30, "Stalled")
    assert stalled["reason"] == "CredentialsNotAllowed"
    assert "autobuild.dev/git-hosts" in stalled["message"]
    assert world.jobs() == []
    # Allowed for another name of the same server, which is not an insecure host: still refused.
    world.core.patch_namespaced_secret(
        "link",
        world.namespace,
        {"metadata": {"annotations": {"autobuild.dev/git-hosts": "localhost"}}},
    )
    other = manifest(
        world.namespace, private.clone_url.replace("127.0.0.1", "localhost"), name="other"
    )
    other["spec"]["source"]["credentialsSecret"] = "link"
    world.create(other)
    refused = eventually(
        lambda: (
            (
                c := next(
                    (
                        c
                        for c in world.status("other").get("conditions") or []
                        if c["type"] == "Ready"
                    ),
                    None,
                )
            )
            and c["reason"] == "CredentialsNotAllowed"
            and c
        ),
        30,
        "refused over plain http",
    )
    assert "AUTOBUILD_INSECURE_GIT_HOSTS" in refused["message"]
    world.core.patch_namespaced_secret(
        "link",
        world.namespace,
        {"metadata": {"annotations": {"autobuild.dev/git-hosts": "127.0.0.1,localhost"}}},
    )
    (job,) = eventually(world.jobs, 60, "the build once the Secret opts in")
    assert job.metadata.labels["autobuild.dev/automatedbuild"] == "app"


def test_secrets_bound_to_repositories_and_images_are_used_for_nothing_else(
    world: World, repo: Repo, registry: Registry
) -> None:
    """A linked token bound to acme's other repository, and a push Secret bound to another
    image: both refused (Stalled, no Job); widened by their owner, the build starts."""
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {
                "name": "link",
                "annotations": {
                    "autobuild.dev/git-hosts": "127.0.0.1",
                    "autobuild.dev/git-repos": "127.0.0.1/acme/billing",
                },
            },
            "stringData": {"token": "org-t0ken"},
        },
    )
    body = manifest(world.namespace, repo)
    body["spec"]["source"]["credentialsSecret"] = "link"
    world.create(body)
    stalled = eventually(lambda: stalled_condition(world), 30, "Stalled")
    assert stalled["reason"] == "CredentialsNotAllowed"
    assert "autobuild.dev/git-repos" in stalled["message"]
    assert world.jobs() == []
    world.core.patch_namespaced_secret(
        "link",
        world.namespace,
        {"metadata": {"annotations": {"autobuild.dev/git-repos": "127.0.0.1/acme/*"}}},
    )
    eventually(world.jobs, 60, "the build once the token is bound to acme's repositories")
    # The push Secret: bound to another image of the same registry.
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {
                "name": "regcred",
                "annotations": {"autobuild.dev/image-repos": f"{registry.host}/acme/web"},
            },
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {
                ".dockerconfigjson": docker_config(registry.host, "pusher", "right-password")
            },
        },
    )
    pushing = manifest(world.namespace, repo, name="pushing")
    pushing["spec"]["image"].update(registry=registry.host, pushSecret="regcred")
    world.create(pushing)
    refused = eventually(lambda: stalled_condition(world, "pushing"), 60, "Stalled")
    assert refused["reason"] == "CredentialsNotAllowed"
    assert f"{registry.host}/acme/pushing" in refused["message"]
    assert "autobuild.dev/image-repos" in refused["message"]
    assert [j for j in world.jobs() if "pushing" in j.metadata.name] == []
    world.core.patch_namespaced_secret(
        "regcred",
        world.namespace,
        {"metadata": {"annotations": {"autobuild.dev/image-repos": f"{registry.host}/acme/*"}}},
    )
    eventually(
        lambda: [
            j
            for j in world.jobs()
            if j.metadata.labels.get("autobuild.dev/automatedbuild") == "pushing"
        ],
        90,
        "the build once the push Secret covers the image",
    )


def test_an_existing_docker_hub_repository_is_not_taken_over(
    world: World, repo: Repo, k8s_cluster: Any, operator: Operator, tmp_path: Path
) -> None:
    """An AutomatedBuild naming an existing private Docker Hub repository as Public leaves it
    Private (VisibilityApplied=False/RepositoryNotManaged) until the push Secret's owner allows
    autobuild to manage existing repositories."""
    from tests.support.fakedockerhub import FakeDockerHub

    with contextlib.ExitStack() as stack:
        hub = stack.enter_context(FakeDockerHub({"alice": "alice-token"}, orgs={"acme": {"alice"}}))
        hub.add_repository("acme", "internal-tools", private=True, description="Internal")
        operator.stop()
        stack.callback(operator.start)
        env = {"AUTOBUILD_DOCKERHUB_URL": hub.url}
        with_hub = Operator(
            k8s_cluster.kubeconfig, tmp_path / "hub.log", operator.registry, env=env
        )
        stack.callback(with_hub.stop)
        with_hub.start()
        world.push_secret(docker_config("https://index.docker.io/v1/", "alice", "alice-token"))
        # No rule builds on creation: nothing is pushed, only the settings are applied.
        rules = [{"source": "main", "dockerTag": "latest", "autobuild": False, "buildCache": False}]
        body = manifest(world.namespace, repo, name="internal-tools", tags=rules)
        body["spec"]["image"].update(registry="docker.io", pushSecret="regcred")
        body["spec"]["image"]["shortDescription"] = "Now public"
        world.create(body)

        def visibility() -> dict[str, Any] | None:
            conditions = world.status("internal-tools").get("conditions") or []
            found = next((c for c in conditions if c["type"] == "VisibilityApplied"), None)
            return found if found is not None and found["reason"] != "Applying" else None

        left = eventually(visibility, 60, "VisibilityApplied")
        assert (left["status"], left["reason"]) == ("False", "RepositoryNotManaged")
        stored = hub.repositories[("acme", "internal-tools")]
        assert (stored["is_private"], stored["description"]) == (True, "Internal")
        assert [m for m, path, _ in hub.calls if path != "/v2/auth/token"] == ["GET"]
        world.core.patch_namespaced_secret(
            "regcred",
            world.namespace,
            {"metadata": {"annotations": {"autobuild.dev/manage-existing-repos": "true"}}},
        )
        eventually(
            lambda: (v := visibility()) and v["status"] == "True", 60, "applied once allowed"
        )
        assert hub.repositories[("acme", "internal-tools")]["is_private"] is False


def test_a_failed_write_is_retried_without_a_new_event(world: World, repo: Repo) -> None:
    """kopf never retries on.event work; our queue does. A quota refuses Job creation (403),
    then goes away: the build is created with no further change to the object."""
    world.core.create_namespaced_resource_quota(
        world.namespace,
        {"metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}},
    )
    eventually(
        lambda: (
            world.core.read_namespaced_resource_quota("no-jobs", world.namespace).status.hard or {}
        ),
        30,
        "quota in force",
    )
    world.create(manifest(world.namespace, repo))
    time.sleep(3)  # let the operator try (and fail) a few times
    assert world.jobs() == []
    world.core.delete_namespaced_resource_quota("no-jobs", world.namespace)
    eventually(world.jobs, 90, "the Job, created by a retry")


def test_a_release_never_undoes_a_cancel(world: World, repo: Repo, k8s_cluster: Any) -> None:
    """Releases and cancels are conditional on the resourceVersion the decision saw."""
    import asyncio

    from autobuild.controller.kubeapi import KubeApi
    from autobuild.controller.reconcile import Controller
    from autobuild.planning.decide import JobWrite
    from autobuild.settings import BuildSettings

    world.create(manifest(world.namespace, repo, runPolicy="Serial"))
    (job,) = eventually(world.jobs, 30, "creation build")
    stale = job.metadata.resource_version
    result = autobuild_cli(k8s_cluster, "cancel", "app", "-n", world.namespace)
    assert result.returncode == 0, result.stderr
    eventually(build_phase(world, "Cancelled"), 30, "Cancelled")

    async def release_with_stale_version() -> int:
        from kubernetes import client as k8s_client
        from kubernetes import config

        configuration = k8s_client.Configuration()
        config.load_kube_config(str(k8s_cluster.kubeconfig), client_configuration=configuration)
        api = KubeApi(configuration)
        try:
            controller = Controller(api, BuildSettings())
            write = JobWrite(job.metadata.name, job.metadata.uid, stale)
            jobs = f"/apis/batch/v1/namespaces/{world.namespace}/jobs"
            return await controller._patch_job(jobs, write, {"spec": {"suspend": False}})
        finally:
            await api.close()

    assert asyncio.run(release_with_stale_version()) == 1  # lost the race: nothing written
    assert world.jobs()[0].spec.suspend is True
    assert world.builds()[0]["phase"] == "Cancelled"


def test_a_build_that_cannot_be_scheduled_says_so(world: World, repo: Repo) -> None:
    """Build pods of this module need a node label no node has: the scheduler's verdict shows
    in status long before the build's deadline."""
    world.create(manifest(world.namespace, repo))
    eventually(world.jobs, 30, "Job")
    build = eventually(
        lambda: (b := world.builds()) and b[0].get("reason") == "Unschedulable" and b[0],
        60,
        "Unschedulable",
    )
    assert build["phase"] == "Pending"
    assert "node" in build["message"]


def hook_secret(
    world: World, name: str = "hook", key: str = "secret", value: str = "s3cret"
) -> bytes:
    world.core.create_namespaced_secret(
        world.namespace, {"metadata": {"name": name}, "stringData": {key: value}}
    )
    return value.encode()


def test_a_signed_push_builds_once_and_two_tags_at_one_commit_build_twice(
    world: World, repo: Repo, operator: Operator
) -> None:
    secret = hook_secret(world)
    tags = [{"sourceType": "Tag", "source": "/^v([0-9.]+)$/", "dockerTag": "{\\1}"}]
    body = manifest(world.namespace, repo, tags=tags, runPolicy="Parallel")
    body["spec"]["source"]["webhookSecret"] = "hook"
    world.create(body)
    eventually(lambda: ready_condition(world), 30, "first visit")
    assert world.status()["webhookPath"] == "/hooks/github"  # shown by kubectl describe
    commit = repo.commit("main", {"v.txt": "1"}, "Release 1.4.2")
    # The tags exist: the payload's commit time is older than the object, so a push builds only
    # while it is the ref's head (docs/webhooks.md, Replays).
    repo.tag("v1.4.2", commit)
    repo.tag("v1.4", commit)
    host, _, path = repo.clone_url.removeprefix("http://").partition("/")
    full_name = path.removesuffix(".git")

    def push(ref: str, signed_with: bytes | None, delivery: str = "") -> tuple[int, str]:
        payload = hooks.encode(
            hooks.github_push(ref, commit, message="Release 1.4.2", full_name=full_name, host=host)
        )
        headers = hooks.github_headers("push", payload, signed_with, delivery)
        return operator.deliver("/hooks/github", payload, headers)

    assert push("refs/tags/v1.4.2", b"wrong")[0] == 401
    assert push("refs/tags/v1.4.2", None)[0] == 401
    time.sleep(1)
    assert world.jobs() == []  # nothing built for an unverified delivery
    assert push("refs/tags/v1.4.2", secret, "delivery-1")[0] == 202
    assert push("refs/tags/v1.4.2", secret, "delivery-1")[0] == 202  # a redelivery
    assert push("refs/tags/v1.4.2", secret, "delivery-2")[0] == 202  # the same push again
    assert push("refs/tags/v1.4", secret, "delivery-3")[0] == 202  # another tag, same commit
    eventually(lambda: len(world.jobs()) == 2, 30, "one Job per tag")
    time.sleep(2)
    assert len(world.jobs()) == 2
    destinations = sorted(
        a
        for j in world.jobs()
        for a in j.spec.template.spec.containers[0].args
        if a.startswith("--destination=")
    )
    assert destinations == [
        "--destination=127.0.0.1:5000/acme/app:1.4",
        "--destination=127.0.0.1:5000/acme/app:1.4.2",
    ]
    args = world.jobs()[0].spec.template.spec.containers[0].args
    assert "--build-arg=COMMIT_MSG=Release 1.4.2" in args
    eventually(
        lambda: sorted(b["trigger"] for b in world.builds()) == ["Push", "Push"], 30, "recorded"
    )
    unknown = hooks.encode(hooks.github_push("refs/heads/main", commit, full_name="acme/other"))
    status, _ = operator.deliver(
        "/hooks/github", unknown, hooks.github_headers("push", unknown, secret)
    )
    assert status == 401  # was 404: unknown and not verified answer alike (issue 17)


def test_the_trigger_url_builds_the_asked_branch(
    world: World, repo: Repo, operator: Operator
) -> None:
    token = hook_secret(world, "trigger", "trigger-token", "t0ken-for-the-url").decode()
    body = manifest(world.namespace, repo, tags=[{"source": "main", "autobuild": False}])
    body["spec"]["triggerSecret"] = "trigger"
    world.create(body)
    eventually(lambda: ready_condition(world), 30, "first visit")
    request = json.dumps({"source_type": "Branch", "source_name": "main"}).encode()
    headers = {"Content-Type": "application/json"}
    path = f"/hooks/trigger/{world.namespace}/app"
    # A wrong token was 401: now the same 404 as an unknown object (issue 17).
    assert operator.deliver(f"{path}/wrong-token", request, headers)[0] == 404
    assert operator.deliver(f"/hooks/trigger/{world.namespace}/nope/x", request, headers)[0] == 404
    status, _ = operator.deliver(f"{path}/{token}", request, headers)
    assert status == 202
    (job,) = eventually(world.jobs, 30, "the triggered build")
    head = repo.heads()["refs/heads/main"]
    assert job.spec.template.spec.containers[0].args[0].endswith(f"#refs/heads/main#{head}")
    eventually(lambda: [b["trigger"] for b in world.builds()] == ["TriggerURL"], 30, "recorded")


def test_polling_builds_a_push_no_webhook_announced(
    world: World, repo: Repo, operator: Operator
) -> None:
    """pollInterval (1m at least): polls start from the heads read on creation, so a push
    before the first poll builds too. The first poll comes within one interval, the next one
    interval later: up to two intervals and a rescan."""
    body = manifest(world.namespace, repo)
    body["spec"]["source"]["pollInterval"] = "1m"
    world.create(body)
    (first,) = eventually(world.jobs, 30, "creation build")
    moved = repo.commit("main", {"p.txt": "1"}, "pushed, no webhook")
    polls = [line for line in operator.log.read_text().splitlines() if world.namespace in line]
    job = eventually(
        lambda: next((j for j in world.jobs() if j.metadata.name != first.metadata.name), None),
        180,
        f"a build found by polling; operator log: {polls[-5:]}",
    )
    assert job.spec.template.spec.containers[0].args[0].endswith(f"#refs/heads/main#{moved}")
    eventually(lambda: "Poll" in [b["trigger"] for b in world.builds()], 30, "recorded as Poll")


def docker_config(host: str, user: str, password: str) -> str:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": auth}}})


def registry_manifest(world: World, repo: Repo, registry: Registry, **spec: Any) -> dict[str, Any]:
    body = manifest(world.namespace, repo, **spec)
    body["spec"]["image"]["registry"] = registry.host
    body["spec"]["image"]["pushSecret"] = "regcred"
    return body


def test_push_preflight_refuses_credentials_that_cannot_push(
    world: World, repo: Repo, registry: Registry
) -> None:
    world.push_secret(docker_config(registry.host, "pusher", "wrong"))
    world.create(registry_manifest(world, repo, registry))
    stalled = eventually(lambda: stalled_condition(world), 60, "Stalled")
    assert stalled["reason"] == "PushUnauthorized"
    assert registry.host in stalled["message"]
    assert "wrong" not in json.dumps(world.status())
    assert world.jobs() == []
    visibility = next(c for c in world.status()["conditions"] if c["type"] == "VisibilityApplied")
    assert visibility["reason"] == "VisibilityUnsupported"
    world.core.patch_namespaced_secret(
        "regcred",
        world.namespace,
        {
            "stringData": {
                ".dockerconfigjson": docker_config(registry.host, "pusher", "right-password")
            }
        },
    )
    eventually(world.jobs, 90, "the build once the Secret can push")


@pytest.fixture(scope="module")
def tls_registry() -> Iterator[Registry]:
    """A real registry with a self-signed certificate (HTTPS) whose one user may push; not
    in AUTOBUILD_INSECURE_REGISTRIES: only its CA (``ca_pem``) makes it trusted."""
    with Registry(users={"pusher": "right-password"}, tls=True) as running:
        yield running


def test_a_private_ca_registry_builds_only_with_its_ca_secret(
    world: World, repo: Repo, tls_registry: Registry
) -> None:
    world.push_secret(docker_config(tls_registry.host, "pusher", "right-password"))
    world.create(registry_manifest(world, repo, tls_registry))
    stalled = eventually(lambda: stalled_condition(world), 60, "Stalled")
    assert stalled["reason"] == "RegistryCertificateUntrusted"
    assert (
        f"registry {tls_registry.host} presented a TLS certificate that is not trusted"
        in (stalled["message"])
    )
    assert "spec.image.caSecret" in stalled["message"]
    assert world.jobs() == []
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {"name": "registry-ca"},
            "stringData": {"ca.crt": tls_registry.ca_pem.decode()},
        },
    )
    world.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        world.namespace,
        PLURAL,
        "app",
        {"spec": {"image": {"caSecret": "registry-ca"}}},
    )
    (job,) = eventually(world.jobs, 90, "the build once the CA is trusted")
    pod = job.spec.template.spec
    assert (
        f"--registry-certificate={tls_registry.host}=/kaniko/registry-ca/ca.crt"
        in pod.containers[0].args
    )
    assert not [a for a in pod.containers[0].args if tls_registry.host in a and "insecure" in a]
    (ca_volume,) = [v for v in pod.volumes if v.name == "registry-ca"]
    assert ca_volume.secret.secret_name == "registry-ca"
    assert "PushUnauthorized" not in json.dumps(world.status())
    # The preflight passed against the real registry: it started (and cancelled) an upload.
    assert "POST /v2/acme/app/blobs/uploads/" in tls_registry.log_text()
    eventually(lambda: stalled_condition(world) is None, 60, "no longer Stalled")


def test_digests_are_checked_against_the_registry(
    world: World, repo: Repo, registry: Registry, k8s_cluster: Any, tmp_path: Path
) -> None:
    crane = Crane(tmp_path, {registry.host: ("pusher", "right-password")})
    pushed = crane.push_random_image(f"{registry.host}/acme/app:latest")
    world.push_secret(docker_config(registry.host, "pusher", "right-password"))
    world.create(registry_manifest(world, repo, registry, runPolicy="Parallel"))
    (job,) = eventually(world.jobs, 60, "creation build")
    world.finish_pod(job.metadata.name, 0, pushed)  # Kaniko's digest file says what it pushed
    build = eventually(
        lambda: (b := world.builds()) and b[0]["phase"] == "Succeeded" and b[0], 60, "Succeeded"
    )
    assert build["digests"] == {"latest": pushed}
    assert build.get("reason") is None
    trigger(k8s_cluster, world)
    second = eventually(
        lambda: next((j for j in world.jobs() if j.metadata.name != job.metadata.name), None),
        30,
        "second build",
    )
    world.finish_pod(second.metadata.name, 0, DIGEST)  # not what the registry holds
    mismatch = eventually(
        lambda: (b := world.builds()) and b[0].get("reason") == "DigestMismatch" and b[0],
        60,
        "DigestMismatch",
    )
    assert mismatch["digests"] == {"latest": pushed}
    world.wait_events("DigestMismatch")


def test_a_build_whose_pod_cannot_be_created_says_so(world: World, repo: Repo) -> None:
    """A quota that allows Jobs but no Pods: the Job controller cannot create the build's Pod,
    and status says so within a minute, not at the build's deadline."""
    world.core.create_namespaced_resource_quota(
        world.namespace, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    )
    eventually(
        lambda: world.core.read_namespaced_resource_quota("no-pods", world.namespace).status.hard,
        30,
        "quota in force",
    )
    world.create(manifest(world.namespace, repo))
    eventually(world.jobs, 30, "Job")
    build = eventually(
        lambda: (b := world.builds()) and b[0].get("reason") == "PodNotCreated" and b[0],
        90,
        "PodNotCreated",
    )
    assert build["phase"] == "Pending"
    assert "ResourceQuota" in build["message"]
