"""Real builds on a real node: the operator's own Kaniko Jobs clone, build and push.

The cluster here has, beside kwok's fake node, a real node ``localhost`` (kubelet ->
containerd -> runc, ``tests/controlplane/realnode.py``) and a registry on 127.0.0.1 holding the
executor image built from the Go module proxy. The Jobs are what ``autobuild render`` prints,
with the settings a real cluster would use for such a node (``AUTOBUILD_BUILD_POD_PATCH``:
hostNetwork, so git and the registry stay on loopback, and a toleration of the node's taint).
Git is the real smart-HTTP server of ``tests/support/gitserver.py``.

Skipped, with the reason, only on a host that cannot run a node (not root, not Linux, tools
missing); everywhere else a failure to build or start the node fails the tests.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from autobuild.planning.failures import classify_log
from tests.controlplane import localcluster, realnode
from tests.support.gitserver import GitServer, Repo
from tests.support.registry import Registry

pytestmark = [pytest.mark.k8s, pytest.mark.realnode]

ROOT = Path(__file__).resolve().parents[2]
# Bounds for a loaded 2-core machine, not expectations: a warm build takes seconds.
JOB_DEADLINE_S = 420
POD_DEADLINE_S = 180

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ARG GREETING=hello
ARG SOURCE_COMMIT
RUN echo "${GREETING} from ${SOURCE_COMMIT}" > /greeting.txt && cat /greeting.txt
"""


def _skip_reason() -> str | None:
    problems = realnode.host_problems()
    return "this host cannot run the real node: " + "; ".join(problems) if problems else None


def _node_binaries() -> list[Path]:
    artifacts = localcluster.ensure_node_artifacts()
    return [
        artifacts.containerd,
        artifacts.debroot / "usr" / "bin" / "containerd-shim-runc-v2",
        artifacts.runc,
        localcluster.ensure_binaries().path("kubelet"),
    ]


def test_cluster_down_leaves_the_host_as_it_was(tmp_path: Path) -> None:
    """``up --real-node`` then ``down`` (what ``make cluster-up NODE=real`` / ``make
    cluster-down`` run, in separate processes): every cgroup, mount, bridge, directory and
    process the node made is gone. Runs before the module's cluster (one node per host)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    node_binaries = _node_binaries()
    before = realnode.host_snapshot(node_binaries)
    script = [sys.executable, "-m", "tests.controlplane.localcluster"]
    state_dir = tmp_path / "cluster"
    up = subprocess.run(
        [*script, "up", "--real-node", "--state-dir", str(state_dir), "--timeout", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stderr
        cluster = localcluster.LocalCluster.attach(state_dir)
        assert cluster is not None
        assert cluster.healthy()
        # A bridged pod (the CNI bridge, a netns, cgroups) and a hostNetwork one.
        for name, host_network in (("bridged", False), ("host", True)):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {
                    "hostNetwork": host_network,
                    "nodeName": realnode.NODE_NAME,
                    "containers": [
                        {
                            "name": "main",
                            "image": cluster.images.busybox,
                            "command": ["/bin/sleep", "3600"],
                        }
                    ],
                },
            }
            cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
        cluster.kubectl(
            "wait",
            "pod/bridged",
            "pod/host",
            "--for=condition=Ready",
            f"--timeout={POD_DEADLINE_S}s",
            timeout=POD_DEADLINE_S + 10,
        )
        during = realnode.host_snapshot(node_binaries)
        changed = before.differences(during)
        # The node's mounts all live in its private mount namespace.
        assert "mounts" not in changed, changed
        # ... and so do the kernel settings the kubelet wants.
        assert "kernel_tunables" not in changed, changed
        # The snapshot sees what the node does (else the comparison below proves nothing).
        assert realnode.BRIDGE in changed["links"][1]
        assert any(c.endswith("/kubepods") for c in changed["cgroups"][1])
        assert set(changed["host_paths"][1]) == {
            p for p in realnode.HOST_PATHS if p not in before.host_paths
        }
        assert len(changed["node_processes"][1]) >= 4  # containerd, kubelet, 2 shims
    finally:
        down = subprocess.run(
            [*script, "down", "--state-dir", str(state_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    after = realnode.host_snapshot(node_binaries)
    assert before.differences(after) == {}


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localcluster.LocalCluster]:
    """A local cluster with the real node (its own: only one real node fits on a host)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = localcluster.LocalCluster(
        state_dir=tmp_path_factory.mktemp("realnode-cluster"), real_node=True
    )
    cluster.start(timeout=300)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def namespace(real_cluster: localcluster.LocalCluster) -> Iterator[str]:
    name = f"rn-{uuid.uuid4().hex[:8]}"
    real_cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        real_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _operator_env(
    cluster: localcluster.LocalCluster, insecure_registries: tuple[str, ...] = ()
) -> dict[str, str]:
    """What the operator of a cluster with such a node is configured with."""
    return {**os.environ, **cluster.operator_env(*insecure_registries)}


def _automated_build(
    cluster: localcluster.LocalCluster, namespace: str, repo: Repo, **source: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "autobuild.dev/v1alpha1",
        "kind": "AutomatedBuild",
        "metadata": {"name": repo.name, "namespace": namespace},
        "spec": {
            "source": {"repo": repo.clone_url, "provider": "git", **source},
            "image": {
                "registry": cluster.registry,
                "namespace": repo.owner,
                "name": repo.name,
                "visibility": "Public",
                "shortDescription": "built on the real node",
            },
            "tags": [{"source": "main", "dockerTag": "latest,{sourceref}"}],
            "buildArgs": {"BASE": cluster.images.busybox, "GREETING": "bonjour"},
        },
    }


def _render(
    cluster: localcluster.LocalCluster,
    automated_build: dict[str, Any],
    commit: str,
    *,
    insecure_registries: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """``autobuild render`` of a push of ``commit`` to main: the operator's own Jobs."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autobuild.cli",
            "render",
            "-f",
            "-",
            "--ref",
            "main",
            "--commit",
            commit,
        ],
        input=yaml.safe_dump(automated_build),
        capture_output=True,
        text=True,
        env=_operator_env(cluster, insecure_registries),
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def _run_job(
    cluster: localcluster.LocalCluster, namespace: str, job: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Create the Job, wait until it is Complete or Failed; (condition, pod's terminated state)."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job))
    name = job["metadata"]["name"]
    deadline = time.monotonic() + JOB_DEADLINE_S
    while True:
        status = json.loads(
            cluster.kubectl("get", "job", "-n", namespace, name, "-o", "json").stdout
        )["status"]
        done = [
            c["type"]
            for c in status.get("conditions", [])
            if c["type"] in ("Complete", "Failed") and c["status"] == "True"
        ]
        if done:
            break
        assert time.monotonic() < deadline, (
            f"Job {name} not finished: {status}\n{_debug(cluster, namespace)}"
        )
        time.sleep(1)
    pods = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", namespace, "-l", f"job-name={name}", "-o", "json"
        ).stdout
    )["items"]
    assert len(pods) == 1, pods
    pod = pods[0]
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    (state,) = pod["status"]["containerStatuses"]
    terminated = dict(state["state"]["terminated"])
    # Kaniko's whole log, read through the kubelet (apiserver -> localhost:port).
    terminated["log"] = cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
    return done[0], terminated


def _debug(cluster: localcluster.LocalCluster, namespace: str) -> str:
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    events = cluster.kubectl("get", "events", "-n", namespace, check=False).stdout
    return f"{pods}\n{events}"


def _crane(
    cluster: localcluster.LocalCluster, *args: str, docker_config: Path | None = None
) -> bytes:
    env = {**os.environ, "DOCKER_CONFIG": str(docker_config or "/nonexistent")}
    proc = subprocess.run(
        [str(cluster.node_artifacts.crane), *args], capture_output=True, check=False, env=env
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _file_in_image(cluster: localcluster.LocalCluster, ref: str, path: str) -> str:
    """A file of the image's flattened file system (``crane export``)."""
    with tarfile.open(fileobj=io.BytesIO(_crane(cluster, "export", ref, "-"))) as tar:
        member = tar.extractfile(path.lstrip("/"))
        assert member is not None, f"{path} not in {ref}"
        return member.read().decode()


def test_operator_job_clones_builds_and_pushes(
    real_cluster: localcluster.LocalCluster, namespace: str, tmp_path: Path
) -> None:
    with GitServer(tmp_path / "git") as git:
        repo = git.create_repo("acme", "greeter")
        commit = repo.commit("main", {"Dockerfile": DOCKERFILE}, "a greeting")
        (job,) = _render(real_cluster, _automated_build(real_cluster, namespace, repo), commit)
        # The Job is the operator's: clone over smart HTTP, pinned to the commit.
        kaniko = job["spec"]["template"]["spec"]["containers"][0]
        assert (
            f"--context=git://127.0.0.1:{git.port}/acme/greeter.git#refs/heads/main#{commit}"
            in kaniko["args"]
        )
        assert {"name": "GIT_PULL_METHOD", "value": "http"} in kaniko["env"]
        condition, terminated = _run_job(real_cluster, namespace, job)

    assert condition == "Complete", terminated["log"]
    digest = terminated["message"].strip()
    assert digest.startswith("sha256:"), terminated
    image = f"{real_cluster.registry}/acme/greeter"
    for tag in ("latest", "main"):
        assert _crane(real_cluster, "digest", f"{image}:{tag}").decode().strip() == digest
    greeting = _file_in_image(real_cluster, f"{image}@{digest}", "/greeting.txt")
    assert greeting == f"bonjour from {commit}\n"
    config = json.loads(_crane(real_cluster, "config", f"{image}@{digest}"))
    assert config["config"]["Labels"]["org.opencontainers.image.revision"] == commit


def test_private_repository_clones_with_the_rendered_credentials(
    real_cluster: localcluster.LocalCluster, namespace: str, tmp_path: Path
) -> None:
    token = "s3cret-" + uuid.uuid4().hex
    with GitServer(tmp_path / "git") as git:
        repo = git.create_repo(
            "acme", "secret-app", private_token=token, private_username="x-access-token"
        )
        commit = repo.commit("main", {"Dockerfile": DOCKERFILE}, "private")
        real_cluster.kubectl(
            "create",
            "secret",
            "generic",
            "git-link",
            "-n",
            namespace,
            f"--from-literal=token={token}",
        )
        document = _automated_build(real_cluster, namespace, repo, credentialsSecret="git-link")
        (job,) = _render(real_cluster, document, commit)
        env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        assert not any(token in json.dumps(item) for item in env), "token inlined in the Job"
        # Provider git: the username that goes with a token; the token by reference.
        assert {"name": "GIT_USERNAME", "value": "x-access-token"} in env
        condition, terminated = _run_job(real_cluster, namespace, job)

    assert condition == "Complete", terminated["log"]
    image = f"{real_cluster.registry}/acme/secret-app:latest"
    assert _crane(real_cluster, "digest", image).decode().strip() == terminated["message"].strip()


def test_broken_dockerfile_fails_with_kanikos_error(
    real_cluster: localcluster.LocalCluster, namespace: str, tmp_path: Path
) -> None:
    broken = DOCKERFILE.replace("RUN echo", "RUN exit 3 && echo")
    with GitServer(tmp_path / "git") as git:
        repo = git.create_repo("acme", "broken")
        commit = repo.commit("main", {"Dockerfile": broken}, "broken")
        (job,) = _render(real_cluster, _automated_build(real_cluster, namespace, repo), commit)
        condition, terminated = _run_job(real_cluster, namespace, job)

    assert condition == "Failed"
    assert terminated["exitCode"] != 0
    # FallbackToLogsOnError: the message is the tail of Kaniko's log.
    assert "exit status 3" in terminated["message"]
    assert (
        subprocess.run(
            [
                str(real_cluster.node_artifacts.crane),
                "digest",
                f"{real_cluster.registry}/acme/broken:latest",
            ],
            capture_output=True,
            check=False,
        ).returncode
        != 0
    ), "a failed build pushed an image"


def test_operator_builds_on_create_and_records_the_registrys_digest(
    real_cluster: localcluster.LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """``autobuild run`` itself: the AutomatedBuild's creation builds main on the real node,
    the status records the digest the registry serves, ``autobuild logs`` shows Kaniko's log."""
    _install_crd(real_cluster)
    env = {**_operator_env(real_cluster), "KUBECONFIG": str(real_cluster.kubeconfig)}
    with GitServer(tmp_path / "git") as git:
        repo = git.create_repo("acme", "operated")
        commit = repo.commit("main", {"Dockerfile": DOCKERFILE}, "operated")
        operator = _start_operator(env, namespace, tmp_path)
        try:
            document = _automated_build(real_cluster, namespace, repo)
            real_cluster.kubectl("apply", "-f", "-", input=json.dumps(document))
            latest = _wait_for_build(real_cluster, namespace, repo.name, operator, tmp_path)
            logs = subprocess.run(
                [sys.executable, "-m", "autobuild.cli", "logs", repo.name, "-n", namespace],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            operator.terminate()
            operator.wait(30)

    assert latest["phase"] == "Succeeded", latest
    assert latest["shortCommit"] == commit[:7]
    image = f"{real_cluster.registry}/acme/operated"
    for tag in ("latest", "main"):
        assert _crane(real_cluster, "digest", f"{image}:{tag}").decode().strip() == latest["digest"]
    assert logs.returncode == 0, logs.stderr
    assert f"bonjour from {commit}" in logs.stdout  # the RUN step's output, via the kubelet


def _wait_for_build(
    cluster: localcluster.LocalCluster,
    namespace: str,
    name: str,
    operator: subprocess.Popen[bytes],
    tmp_path: Path,
) -> dict[str, Any]:
    """The AutomatedBuild's ``status.latestBuild`` once it finished (Succeeded or Failed)."""
    deadline = time.monotonic() + JOB_DEADLINE_S
    while True:
        assert operator.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
        body = json.loads(
            cluster.kubectl("get", "automatedbuild", name, "-n", namespace, "-o", "json").stdout
        )
        latest = (body.get("status") or {}).get("latestBuild") or {}
        if latest.get("phase") in ("Succeeded", "Failed", "TimedOut", "Cancelled"):
            return dict(latest)
        assert time.monotonic() < deadline, f"no finished build: {body.get('status')}\n" + _debug(
            cluster, namespace
        )
        time.sleep(1)


def test_build_cache_reuses_the_layers_of_an_earlier_commit(
    real_cluster: localcluster.LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """``buildCache: true``: the second commit's build takes the unchanged ``RUN`` step's
    layer from the cache repository (pushed to and pulled from the insecure registry)."""
    dockerfile = (
        "ARG BASE\n"
        "FROM ${BASE}\n"
        "RUN echo expensive > /layer.txt\n"
        "ARG SOURCE_COMMIT\n"
        'RUN echo "${SOURCE_COMMIT}" > /commit.txt\n'
    )
    with GitServer(tmp_path / "git") as git:
        repo = git.create_repo("acme", "cached")
        document = _automated_build(real_cluster, namespace, repo)
        document["spec"]["tags"][0]["buildCache"] = True
        logs = []
        for files in ({"Dockerfile": dockerfile}, {"README": "second commit\n"}):
            commit = repo.commit("main", files, "change")
            (job,) = _render(real_cluster, document, commit)
            assert any(a.startswith("--cache-repo=") for a in job_args(job))
            condition, terminated = _run_job(real_cluster, namespace, job)
            assert condition == "Complete", terminated["log"]
            logs.append(terminated["log"])

    assert "No cached layer found for cmd RUN echo expensive" in logs[0]
    assert "Using caching version of cmd: RUN echo expensive" in logs[1]
    image = f"{real_cluster.registry}/acme/cached:latest"
    assert _file_in_image(real_cluster, image, "/commit.txt") == commit + "\n"
    assert _file_in_image(real_cluster, image, "/layer.txt") == "expensive\n"


def job_args(job: dict[str, Any]) -> list[str]:
    args: list[str] = job["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_push_secret_authenticates_and_a_wrong_password_is_push_denied(
    real_cluster: localcluster.LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """A destination registry with htpasswd auth: the push Secret the operator mounts as
    ``/kaniko/.docker/config.json`` works; a wrong password fails as ``PushUnauthorized``."""
    password = uuid.uuid4().hex
    with (
        GitServer(tmp_path / "git") as git,
        Registry(users={"pusher": password}, workdir=tmp_path) as registry,
    ):
        repo = git.create_repo("acme", "pushed")
        commit = repo.commit("main", {"Dockerfile": DOCKERFILE}, "push me")
        results = {}
        for secret, secret_password in (("push-good", password), ("push-bad", "wrong")):
            auth = base64.b64encode(f"pusher:{secret_password}".encode()).decode()
            config = {"auths": {registry.host: {"auth": auth}}}
            real_cluster.kubectl(
                "create",
                "secret",
                "generic",
                secret,
                "-n",
                namespace,
                "--type=kubernetes.io/dockerconfigjson",
                "--from-literal=.dockerconfigjson=" + json.dumps(config),
            )
            document = _automated_build(real_cluster, namespace, repo)
            document["metadata"]["name"] = secret
            document["spec"]["image"].update(registry=registry.host, pushSecret=secret)
            (job,) = _render(
                real_cluster,
                document,
                commit,
                insecure_registries=(registry.host,),
            )
            results[secret] = _run_job(real_cluster, namespace, job)
        good_config = tmp_path / "docker"
        good_config.mkdir()
        auth = base64.b64encode(f"pusher:{password}".encode()).decode()
        (good_config / "config.json").write_text(
            json.dumps({"auths": {registry.host: {"auth": auth}}})
        )
        condition, terminated = results["push-good"]
        assert condition == "Complete", terminated["log"]
        served = _crane(
            real_cluster, "digest", f"{registry.host}/acme/pushed:latest", docker_config=good_config
        )
        assert served.decode().strip() == terminated["message"].strip()

    condition, terminated = results["push-bad"]
    assert condition == "Failed"
    failure = classify_log(terminated["message"])
    assert failure is not None, terminated["message"]
    assert failure[0] == "PushUnauthorized"
    assert password not in terminated["log"]


def test_a_private_ca_registry_is_pushed_to_only_with_the_ca_secret(
    real_cluster: localcluster.LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """A destination registry with a self-signed certificate (HTTPS, not insecure): Kaniko
    trusts it through spec.image.caSecret (``--registry-certificate``); without it Kaniko's
    push fails on the certificate, classified ``RegistryCertificateUntrusted``."""
    password = uuid.uuid4().hex
    with (
        GitServer(tmp_path / "git") as git,
        Registry(users={"pusher": password}, tls=True, workdir=tmp_path) as registry,
    ):
        host = registry.host
        repo = git.create_repo("acme", "private-ca")
        commit = repo.commit("main", {"Dockerfile": DOCKERFILE}, "over TLS")
        auth = base64.b64encode(f"pusher:{password}".encode()).decode()
        config = json.dumps({"auths": {registry.host: {"auth": auth}}})
        real_cluster.kubectl(
            "create",
            "secret",
            "generic",
            "regcred",
            "-n",
            namespace,
            "--type=kubernetes.io/dockerconfigjson",
            "--from-literal=.dockerconfigjson=" + config,
        )
        ca_file = tmp_path / "ca.crt"
        ca_file.write_bytes(registry.ca_pem)
        real_cluster.kubectl(
            "create",
            "secret",
            "generic",
            "registry-ca",
            "-n",
            namespace,
            f"--from-file=ca.crt={ca_file}",
        )
        results = {}
        for name, ca_secret in (("with-ca", {"caSecret": "registry-ca"}), ("without-ca", {})):
            document = _automated_build(real_cluster, namespace, repo)
            document["metadata"]["name"] = name
            document["spec"]["image"].update(
                registry=registry.host, pushSecret="regcred", **ca_secret
            )
            (job,) = _render(real_cluster, document, commit)
            results[name] = (job_args(job), _run_job(real_cluster, namespace, job))
        # crane verifies the registry against its CA too (Go reads SSL_CERT_FILE).
        docker_config = tmp_path / "docker"
        docker_config.mkdir()
        (docker_config / "config.json").write_text(config)
        proc = subprocess.run(
            [
                str(real_cluster.node_artifacts.crane),
                "digest",
                f"{registry.host}/acme/private-ca:latest",
            ],
            capture_output=True,
            check=False,
            env={**os.environ, "DOCKER_CONFIG": str(docker_config), "SSL_CERT_FILE": str(ca_file)},
        )
        assert proc.returncode == 0, proc.stderr.decode()
        served = proc.stdout.decode().strip()

    args, (condition, terminated) = results["with-ca"]
    assert f"--registry-certificate={host}=/kaniko/registry-ca/ca.crt" in args
    assert not [a for a in args if host in a and "insecure" in a]
    assert condition == "Complete", terminated["log"]
    assert served == terminated["message"].strip()
    args, (condition, terminated) = results["without-ca"]
    assert not [a for a in args if "registry-certificate" in a]
    assert condition == "Failed"
    failure = classify_log(terminated["message"])
    assert failure is not None, terminated["message"]
    assert failure[0] == "RegistryCertificateUntrusted", terminated["message"]


def _install_crd(cluster: localcluster.LocalCluster) -> None:
    cluster.kubectl("apply", "-f", str(ROOT / "crds" / "automatedbuild.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/automatedbuilds.autobuild.dev", "--timeout=60s"
    )


def _start_operator(env: dict[str, str], namespace: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    """``autobuild run`` for one namespace, logging (appending) to tmp_path/operator.log."""
    with (tmp_path / "operator.log").open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autobuild.cli",
                "run",
                "-n",
                namespace,
                "--probes",
                f"127.0.0.1:{localcluster._free_ports(1)[0]}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def test_operator_killed_mid_build_records_the_build_once(
    real_cluster: localcluster.LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """SIGKILL the operator while Kaniko runs: the Job finishes on its own (``autobuild logs
    -f`` follows it to the push), and the operator started again records that one build as
    Succeeded with the pushed digest."""
    _install_crd(real_cluster)
    env = {**_operator_env(real_cluster), "KUBECONFIG": str(real_cluster.kubeconfig)}
    slow = DOCKERFILE.replace("RUN echo", "RUN sleep 10 && echo")
    with GitServer(tmp_path / "git") as git:
        repo = git.create_repo("acme", "interrupted")
        repo.commit("main", {"Dockerfile": slow}, "slow build")
        operator = _start_operator(env, namespace, tmp_path)
        try:
            document = _automated_build(real_cluster, namespace, repo)
            real_cluster.kubectl("apply", "-f", "-", input=json.dumps(document))
            deadline = time.monotonic() + POD_DEADLINE_S
            while _running_build_pods(real_cluster, namespace) == 0:
                assert time.monotonic() < deadline, _debug(real_cluster, namespace)
                time.sleep(0.5)
        finally:
            operator.kill()
            operator.wait(30)
        # The build goes on without the operator; `autobuild logs -f` follows it to its end.
        followed = subprocess.run(
            [sys.executable, "-m", "autobuild.cli", "logs", repo.name, "-n", namespace, "-f"],
            env=env,
            capture_output=True,
            text=True,
            timeout=JOB_DEADLINE_S,
            check=False,
        )
        assert followed.returncode == 0, followed.stderr
        assert "bonjour from" in followed.stdout
        assert "Pushed" in followed.stdout
        jobs = json.loads(real_cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)
        (job,) = jobs["items"]
        real_cluster.kubectl(
            "wait",
            "-n",
            namespace,
            f"job/{job['metadata']['name']}",
            "--for=condition=Complete",
            f"--timeout={JOB_DEADLINE_S}s",
            timeout=JOB_DEADLINE_S + 10,
        )
        operator = _start_operator(env, namespace, tmp_path)
        try:
            latest = _wait_for_build(real_cluster, namespace, repo.name, operator, tmp_path)
            body = json.loads(
                real_cluster.kubectl(
                    "get", "automatedbuild", repo.name, "-n", namespace, "-o", "json"
                ).stdout
            )
        finally:
            operator.terminate()
            operator.wait(30)

    assert latest["phase"] == "Succeeded", latest
    builds = body["status"]["builds"]
    assert [b["jobName"] for b in builds] == [job["metadata"]["name"]]
    jobs_after = json.loads(
        real_cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout
    )["items"]
    assert [j["metadata"]["name"] for j in jobs_after] == [job["metadata"]["name"]]
    image = f"{real_cluster.registry}/acme/interrupted:latest"
    assert _crane(real_cluster, "digest", image).decode().strip() == latest["digest"]


def _running_build_pods(cluster: localcluster.LocalCluster, namespace: str) -> int:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)
    return sum(1 for p in pods["items"] if p["status"].get("phase") == "Running")


def test_a_private_build_clones_no_submodule_and_its_host_hears_nothing(
    real_cluster: localcluster.LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """Issue 17, item 10: Kaniko's go-git clones submodules with the repository's token, to
    whatever host .gitmodules names. A build with credentials recurses into none."""
    from tests.support.gitserver import git_env
    from tests.support.hostilegit import COMMIT, RecordingGitServer

    token = "s3cret-" + uuid.uuid4().hex
    with (
        GitServer(tmp_path / "git") as git,
        RecordingGitServer(host="127.0.0.2") as other_host,
    ):
        repo = git.create_repo("acme", "with-submodule", private_token=token)
        work = tmp_path / "work"
        work.mkdir()
        env = git_env(tmp_path)

        def run_git(*args: str) -> None:
            argv = ["git", "-c", "init.defaultBranch=main", *args]
            subprocess.run(argv, cwd=work, env=env, check=True, capture_output=True)

        run_git("init", "-q")
        (work / "Dockerfile").write_text(DOCKERFILE)
        (work / ".gitmodules").write_text(
            f'[submodule "lib"]\n\tpath = lib\n\turl = {other_host.url}/evil/lib.git\n'
        )
        run_git("add", "Dockerfile", ".gitmodules")
        run_git("update-index", "--add", "--cacheinfo", f"160000,{COMMIT},lib")
        run_git("commit", "-qm", "a submodule on another host")
        run_git(
            "push", "-q", repo.clone_url.replace("://", f"://u:{token}@"), "HEAD:refs/heads/main"
        )
        commit = repo.heads()["refs/heads/main"]
        real_cluster.kubectl(
            "create",
            "secret",
            "generic",
            "git-link",
            "-n",
            namespace,
            f"--from-literal=token={token}",
        )
        document = _automated_build(real_cluster, namespace, repo, credentialsSecret="git-link")
        (job,) = _render(real_cluster, document, commit)
        condition, terminated = _run_job(real_cluster, namespace, job)
        # No request at all: the token never went there (the build pods share the host's
        # loopback, so go-git would reach it).
        assert other_host.requests == []
    assert condition == "Complete", terminated["log"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(arg.startswith("--git=") for arg in args)


def test_kaniko_follows_a_redirect_with_the_token(
    real_cluster: localcluster.LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """What the operator's check before a credentialed build guards against (issue 17, item 9;
    docs/security-git.md): the real executor follows a redirect of the allowed host and sends
    the token to the other host. When this fails, Kaniko stopped doing it."""
    import base64 as b64

    from tests.support.hostilegit import RecordingGitServer, RedirectServer

    token = "s3cret-" + uuid.uuid4().hex
    with (
        GitServer(tmp_path / "git") as git,
        RecordingGitServer(host="127.0.0.2") as other_host,
        RedirectServer(other_host.url) as allowed,
    ):
        repo = git.create_repo("acme", "redirected", private_token=token)
        commit = repo.commit("main", {"Dockerfile": DOCKERFILE}, "one")
        real_cluster.kubectl(
            "create",
            "secret",
            "generic",
            "git-link",
            "-n",
            namespace,
            f"--from-literal=token={token}",
        )
        document = _automated_build(real_cluster, namespace, repo, credentialsSecret="git-link")
        document["spec"]["source"]["repo"] = f"{allowed.url}/acme/redirected.git"
        (job,) = _render(real_cluster, document, commit)
        condition, _ = _run_job(real_cluster, namespace, job)
        seen = {r.authorization for r in other_host.requests}
    assert condition == "Failed"  # the recording host serves no pack
    assert "Basic " + b64.b64encode(f"x-access-token:{token}".encode()).decode() in seen
