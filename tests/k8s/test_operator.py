"""The operator on the real control plane: Jobs, build tracking, triggers, policies, restarts.

Build pods are pinned (AUTOBUILD_NODE_SELECTOR) to a label no node has, so they stay Pending
until a test moves them itself, the way a kubelet would: deterministic phases, digests and
failures. The one end-to-end test labels kwok's node so kwok runs the pod to completion.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.gitserver import GitServer, Repo

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
BUILDER_LABEL = ("autobuild.dev/test-builder", "kwok")
DIGEST = "sha256:" + "c" * 64
GROUP, VERSION, PLURAL = "autobuild.dev", "v1alpha1", "automatedbuilds"


def eventually(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Operator:
    """``autobuild run`` as a real subprocess."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        port = free_port()
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        env["AUTOBUILD_NODE_SELECTOR"] = "=".join(BUILDER_LABEL)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "autobuild.cli",
                    "run",
                    "--probes",
                    f"127.0.0.1:{port}",
                    "--log-format",
                    "json",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def healthy() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        try:
            eventually(healthy, 60, "operator readiness")
        except BaseException:
            self.stop()  # a fixture that fails to start never reaches its teardown
            raise
        self.port = port

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def crd(k8s_cluster: Any) -> None:
    k8s_cluster.kubectl("apply", "-f", str(ROOT / "crds" / "automatedbuild.yaml"))
    k8s_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/automatedbuilds.autobuild.dev", "--timeout=60s"
    )


@pytest.fixture(scope="module")
def operator(
    k8s_cluster: Any, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(k8s_cluster.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
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
    world: World, repo: Repo
) -> None:
    head = repo.heads()["refs/heads/main"]
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
    events = world.core.list_namespaced_event(world.namespace).items
    reasons = {e.reason for e in events if e.involved_object.kind == "AutomatedBuild"}
    assert {"BuildStarted", "BuildSucceeded"} <= reasons


def test_failing_pod_is_failed_with_reason_and_log_tail(world: World, repo: Repo) -> None:
    world.create(manifest(world.namespace, repo))
    (job,) = eventually(world.jobs, 30, "Job")
    world.finish_pod(
        job.metadata.name, 1, "error building image: UNAUTHORIZED: authentication required"
    )
    eventually(build_phase(world, "Failed"), 60, "Failed")
    build = world.builds()[0]
    assert build["reason"] == "Error"
    assert "UNAUTHORIZED" in build["message"]
    ready = next(c for c in world.status()["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "BuildFailed")


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
    """Creation and earlier triggers are acted on (a newer trigger value supersedes an older)."""

    def handled() -> bool:
        body = world.get()
        wanted = (body["metadata"].get("annotations") or {}).get("autobuild.dev/trigger", "")
        return (body.get("status") or {}).get("lastTrigger") == wanted

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

    def stalled() -> dict[str, Any] | None:
        conditions = {c["type"]: c for c in world.status().get("conditions") or []}
        return (
            conditions.get("Stalled")
            if conditions.get("Stalled", {}).get("status") == "True"
            else None
        )

    condition = eventually(stalled, 30, "Stalled")
    assert condition["reason"] == "SecretNotFound"
    # Retrying is the operator's business: no finalizer or kopf state lands in the object.
    metadata = world.get()["metadata"]
    assert not metadata.get("finalizers")
    assert not [k for k in metadata.get("annotations") or {} if "kopf" in k or "last-handled" in k]
    assert "spec.image.pushSecret" in condition["message"]
    assert world.jobs() == []
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {"name": "regcred"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": '{"auths": {}}'},
        },
    )
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
        {"metadata": {"name": "link"}, "stringData": {"token": "s3cr3t-token-value"}},
    )
    body = manifest(world.namespace, repo)
    body["spec"]["source"]["credentialsSecret"] = "link"
    world.create(body)
    eventually(world.jobs, 30, "Job")
    dumped = json.dumps(world.get()) + json.dumps([j.to_dict() for j in world.jobs()], default=str)
    assert "s3cr3t-token-value" not in dumped


def test_push_entry_point_builds_matching_rules_once(
    world: World, repo: Repo, k8s_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from autobuild.api.models import Trigger
    from autobuild.controller import kube, reconcile
    from autobuild.planning.planner import PushEvent
    from autobuild.settings import BuildSettings

    tags = [
        {"source": "main", "dockerTag": "latest"},
        {"sourceType": "Tag", "source": "/^v([0-9.]+)$/", "dockerTag": "{\\1}"},
    ]
    world.create(manifest(world.namespace, repo, tags=tags, runPolicy="Parallel"))
    eventually(lambda: len(world.jobs()) == 1, 30, "creation build")
    commit = repo.commit("main", {"v.txt": "1"}, "Release 1.0")
    repo.tag("v1.0", commit)
    monkeypatch.setenv("KUBECONFIG", str(k8s_cluster.kubeconfig))
    kube.load_config()
    settings = BuildSettings(node_selector=(BUILDER_LABEL,))
    event = PushEvent.parse("refs/tags/v1.0", commit, "Release 1.0", Trigger.PUSH)
    created = asyncio.run(reconcile.submit_push(world.namespace, "app", event, settings))
    assert len(created) == 1
    # A redelivered webhook maps to the same Job name: nothing new is built.
    assert asyncio.run(reconcile.submit_push(world.namespace, "app", event, settings)) == []
    job = next(j for j in world.jobs() if j.metadata.name == created[0])
    args = job.spec.template.spec.containers[0].args
    assert "--destination=127.0.0.1:5000/acme/app:1.0" in args
    assert "--build-arg=COMMIT_MSG=Release 1.0" in args
    eventually(
        lambda: any(b["jobName"] == created[0] and b["trigger"] == "Push" for b in world.builds()),
        30,
        "push build recorded",
    )


def test_probes_and_json_logs(operator: Operator) -> None:
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.port}{path}", timeout=2) as answer:
            assert answer.status == 200
    lines = [line for line in operator.log.read_text().splitlines() if line.startswith("{")]
    assert lines, "no JSON log line"
    record = json.loads(lines[-1])
    assert {"message", "severity", "timestamp"} <= record.keys()


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


def test_bad_trigger_annotation_is_reported(world: World, repo: Repo, k8s_cluster: Any) -> None:
    world.create(manifest(world.namespace, repo))
    eventually(world.jobs, 30, "creation build")
    wait_triggers_handled(world)
    k8s_cluster.kubectl(
        "annotate",
        "-n",
        world.namespace,
        "ab/app",
        "autobuild.dev/trigger=now",
        "autobuild.dev/trigger-ref=refs/heads/a b",
    )
    ready = eventually(
        lambda: (c := ready_condition(world)) and c["reason"] == "InvalidTrigger" and c,
        30,
        "InvalidTrigger",
    )
    assert "not a safe git ref name" in ready["message"]


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


def test_the_shipped_rbac_is_enough(
    world: World, repo: Repo, k8s_cluster: Any, operator: Operator, tmp_path: Path
) -> None:
    """The operator runs with only manifests/rbac.yaml's ClusterRole, through a real token."""
    k8s_cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "rbac.yaml"))
    token = k8s_cluster.kubectl(
        "create", "token", "autobuild-operator", "-n", "autobuild-system", "--duration=1h"
    ).stdout.strip()
    config = yaml.safe_load(Path(k8s_cluster.kubeconfig).read_text())
    config["users"] = [{"name": config["users"][0]["name"], "user": {"token": token}}]
    limited = tmp_path / "operator-kubeconfig"
    limited.write_text(yaml.safe_dump(config))
    operator.stop()
    restricted = Operator(limited, tmp_path / "restricted.log")
    try:
        restricted.start()
        world.core.create_namespaced_secret(
            world.namespace,
            {
                "metadata": {"name": "regcred"},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": '{"auths": {}}'},
            },
        )
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
        events = world.core.list_namespaced_event(world.namespace).items
        assert {"BuildStarted", "BuildSucceeded"} <= {e.reason for e in events}
        repo.commit("main", {"b.txt": "2"}, "second")
        trigger(k8s_cluster, world)
        eventually(lambda: len(world.jobs()) == 2, 30, "second Job")
        second = next(j for j in world.jobs() if j.metadata.name != job.metadata.name)
        world.finish_pod(second.metadata.name, 0, DIGEST)
        eventually(
            lambda: [j.metadata.name for j in world.jobs()] == [second.metadata.name],
            60,
            "the older succeeded Job pruned (historyLimit 0 keeps only the newest)",
        )
    finally:
        restricted.stop()
        operator.start()
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
        world.namespace, {"metadata": {"name": "link"}, "stringData": {"token": "wrong-token"}}
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
    assert env["GIT_USERNAME"].value == "x-access-token"
    assert env["GIT_PASSWORD"].value is None
    assert env["GIT_PASSWORD"].value_from.secret_key_ref.name == "link"
    assert env["GIT_PASSWORD"].value_from.secret_key_ref.key == "token"
    assert "GIT_TOKEN" not in env
