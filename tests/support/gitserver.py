"""A real smart-HTTP git server on 127.0.0.1 for tests and the demo.

``git http-backend`` runs as CGI behind a ``ThreadingHTTPServer`` in a background thread, so
clone, fetch, ls-remote (protocol v0/v1 and v2) and push all work as against a real host.
Repositories live at ``ROOT/OWNER/NAME.git``; a repository is private when its directory holds
a ``gitserver-token`` file: requests then need HTTP Basic auth with that token as the password,
otherwise 401. The username may be anything, unless a ``gitserver-username`` file names the only
one accepted (as GitLab wants ``oauth2`` and Bitbucket ``x-token-auth`` next to a token).
``GitServer(root, protocol_v2=False)`` plays a server that predates protocol v2: it ignores the
client's ``Git-Protocol`` header and always answers in protocol v0.

Library use::

    with GitServer(tmp_path) as server:
        repo = server.create_repo("acme", "app")
        sha = repo.commit("main", {"Dockerfile": "FROM scratch\\n"}, "first")
        repo.tag("v1.0.0", sha, annotated=True)

As a script (serves until killed; prints the URL on the first line of stdout)::

    python -m tests.support.gitserver serve --root DIR [--port N] [--repo OWNER/NAME]...
        [--private-repo OWNER/NAME]...   # token from the GITSERVER_TOKEN environment variable
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import io
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any, ClassVar, cast

from tests.support.httpserver import ThreadedHTTPService, basic_credentials

__all__ = ["GitServer", "Repo", "git_env"]

log = logging.getLogger("gitserver")

TOKEN_FILE = "gitserver-token"
USERNAME_FILE = "gitserver-username"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_BACKEND_HEADERS = 64 * 1024


def _git_exec_path() -> Path:
    out = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def git_env(home: Path | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for git: no user or system config, no prompts, fixed identity."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home) if home else tempfile.gettempdir(),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.invalid",
        "GIT_COMMITTER_NAME": "Test Committer",
        "GIT_COMMITTER_EMAIL": "committer@example.invalid",
        "LC_ALL": "C",
    }
    env.update(extra or {})
    return env


def _git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run git (no shell) and return its stdout; raise with git's stderr on failure."""
    proc = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=dict(env) if env is not None else git_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
        )
    return proc.stdout


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value) or value.endswith(".git"):
        raise ValueError(f"invalid owner or repository name: {value!r}")
    return value


class Repo:
    """A bare repository served by a :class:`GitServer`."""

    def __init__(self, server: GitServer, owner: str, name: str) -> None:
        self.server = server
        self.owner = owner
        self.name = name
        self.path = server.root / owner / f"{name}.git"

    @property
    def clone_url(self) -> str:
        """``http://127.0.0.1:PORT/OWNER/NAME.git`` (the server must be started)."""
        return f"{self.server.url}/{self.owner}/{self.name}.git"

    @property
    def token(self) -> str | None:
        """The token a client needs, or None for a public repository."""
        return _read_token(self.path)

    @property
    def username(self) -> str | None:
        """The only username the repository accepts next to its token, or None for any."""
        return _read_secret_file(self.path / USERNAME_FILE)

    def _client_env(self, home: Path) -> dict[str, str]:
        token = self.token
        if token is None:
            return git_env(home)
        user = self.username or "test"
        header = "Authorization: Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        return git_env(
            home,
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": header,
            },
        )

    def commit(
        self,
        branch: str,
        files: Mapping[str, str | bytes | None],
        message: str,
        *,
        base: str | None = None,
    ) -> str:
        """Commit ``files`` on ``branch`` in a scratch work tree and push it over HTTP.

        Paths are relative to the repository root; ``bytes`` are committed as they are,
        ``str`` as UTF-8 (no newline translation); ``None`` deletes a file; other files are
        kept. A new branch starts from ``base`` (a commit or ref), by default from ``main``
        when it exists, else from nothing. Returns the new commit's full sha.
        """
        with tempfile.TemporaryDirectory(prefix="gitserver-work-") as scratch:
            work = Path(scratch)
            env = self._client_env(work)
            _git("init", "-q", str(work), env=env)
            heads = self.heads()
            start = (
                f"refs/heads/{branch}"
                if f"refs/heads/{branch}" in heads
                else base or ("refs/heads/main" if "refs/heads/main" in heads else None)
            )
            if start is not None:
                # Read objects straight from the bare repository: only the push goes over HTTP.
                _git("fetch", "-q", str(self.path), start, cwd=work, env=env)
                _git("checkout", "-q", "-B", branch, "FETCH_HEAD", cwd=work, env=env)
            else:
                _git("checkout", "-q", "--orphan", branch, cwd=work, env=env)
            for rel, content in files.items():
                target = (work / rel).resolve()
                if not target.is_relative_to(work.resolve()) or ".git" in Path(rel).parts:
                    raise ValueError(f"path outside the work tree: {rel!r}")
                if content is None:
                    target.unlink(missing_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content if isinstance(content, bytes) else content.encode())
            _git("add", "-A", cwd=work, env=env)
            _git("commit", "-q", "--allow-empty", "-m", message, cwd=work, env=env)
            sha = _git("rev-parse", "HEAD", cwd=work, env=env).strip()
            _git("push", "-q", self.clone_url, f"HEAD:refs/heads/{branch}", cwd=work, env=env)
            return sha

    def tag(self, name: str, commit: str, *, annotated: bool = False, message: str = "") -> None:
        """Create (or move) tag ``name`` at ``commit``, lightweight or annotated."""
        args = ["-a", "-m", message or f"Release {name}"] if annotated else []
        _git(f"--git-dir={self.path}", "tag", "-f", *args, name, commit)

    def configure(self, key: str, value: str) -> None:
        """Set a server-side option of the repository, e.g. ``uploadpack.allowFilter``."""
        _git(f"--git-dir={self.path}", "config", key, value)

    def delete_ref(self, ref: str) -> None:
        """Delete a ref, e.g. ``refs/heads/feature`` or ``refs/tags/v1``."""
        if not ref.startswith("refs/"):
            raise ValueError(f"expected a full ref name, got {ref!r}")
        _git(f"--git-dir={self.path}", "update-ref", "-d", ref)

    def heads(self) -> dict[str, str]:
        """Every ``refs/heads/*`` and ``refs/tags/*`` ref and its commit (tags peeled).

        The same mapping ``git ls-remote`` (and ``autobuild.sources.git.ls_remote``) reports.
        """
        out = _git(
            f"--git-dir={self.path}",
            "for-each-ref",
            "--format=%(objectname) %(*objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        )
        refs: dict[str, str] = {}
        for line in out.splitlines():
            sha, peeled, ref = line.split(" ", 2)
            refs[ref] = peeled or sha
        return refs


def _read_secret_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def _read_token(repo_dir: Path) -> str | None:
    return _read_secret_file(repo_dir / TOKEN_FILE)


class _Handler(BaseHTTPRequestHandler):
    """Runs ``git http-backend`` as CGI for every request."""

    server: _HTTPServer
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes
    server_version = "autobuild-gitserver/1"
    _hop_by_hop: ClassVar[frozenset[str]] = frozenset(
        {"connection", "content-length", "transfer-encoding", "authorization"}
    )

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _authorized_user(self, repo_dir: Path) -> str | None:
        """'' for a public repository, the username for good credentials, None otherwise."""
        token = _read_token(repo_dir)
        if token is None:
            return ""
        credentials = basic_credentials(self.headers.get("Authorization") or "")
        if credentials is None:
            return None
        user, password = credentials
        if not hmac.compare_digest(password.encode(), token.encode()):
            return None
        wanted = _read_secret_file(repo_dir / USERNAME_FILE)
        if wanted is not None and not hmac.compare_digest(user.encode(), wanted.encode()):
            return None
        return user or "git"

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        parts = [p for p in path.split("/") if p]
        if len(parts) < 3 or ".." in parts:
            self.send_error(404, "Not Found")
            return
        repo_dir = self.server.root / parts[0] / parts[1]
        user = self._authorized_user(repo_dir)
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="gitserver"')
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"authentication required\n")
            return
        env = git_env(
            self.server.root,
            {
                "GIT_PROJECT_ROOT": str(self.server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": self.request_version,
                "SERVER_SOFTWARE": self.server_version,
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "REMOTE_ADDR": self.client_address[0],
                "REMOTE_USER": user or "anonymous",
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            },
        )
        if user:
            env["AUTH_TYPE"] = "Basic"
        for key, value in self.headers.items():
            if key.lower() not in self._hop_by_hop:
                env["HTTP_" + key.upper().replace("-", "_")] = value
        if self.server.protocol_v2:
            if proto := self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = proto
        else:  # http-backend also reads the header itself, as HTTP_GIT_PROTOCOL
            env.pop("HTTP_GIT_PROTOCOL", None)
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length = int(self.headers.get("Content-Length") or 0)
        if not chunked:
            env["CONTENT_LENGTH"] = str(length)

        backend = subprocess.Popen(
            [str(self.server.exec_path / "git-http-backend")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        stdin, stdout, stderr = backend.stdin, backend.stdout, backend.stderr
        assert stdin is not None
        assert stdout is not None
        assert stderr is not None
        feeder = threading.Thread(target=self._feed, args=(stdin, chunked, length), daemon=True)
        feeder.start()
        errors: list[bytes] = []
        drain = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
        drain.start()
        try:
            self._relay(stdout)
        finally:
            stdout.close()
            backend.wait()
            feeder.join()
            drain.join()
            if errors and errors[0].strip():
                log.info("git http-backend: %s", errors[0].decode(errors="replace").strip())

    def _feed(self, stdin: IO[bytes], chunked: bool, length: int) -> None:
        """Stream the request body (plain or chunked) to the backend's stdin."""
        try:
            if chunked:
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        break
                    self._copy(stdin, size)
                    self.rfile.readline()  # CRLF after the chunk
            else:
                self._copy(stdin, length)
        except (OSError, ValueError) as e:
            log.debug("request body: %s", e)
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _copy(self, stdin: IO[bytes], size: int) -> None:
        while size > 0:
            block = self.rfile.read(min(size, 65536))
            if not block:
                raise EOFError("request body ended early")
            stdin.write(block)
            size -= len(block)

    def _relay(self, stdout: IO[bytes]) -> None:
        """Turn the CGI response (headers, blank line, body) into an HTTP response."""
        status, headers = 200, []
        total = 0
        while True:
            line = stdout.readline(_BACKEND_HEADERS)
            total += len(line)
            if not line or total > _BACKEND_HEADERS:
                self.send_error(502, "Bad Gateway", "git http-backend sent no valid response")
                return
            text = line.decode("latin-1").rstrip("\r\n")
            if not text:
                break
            key, _, value = text.partition(":")
            if key.strip().lower() == "status":
                status = int(value.strip().split(" ", 1)[0])
            else:
                headers.append((key.strip(), value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        reader = cast(io.BufferedReader, stdout)
        while block := reader.read1(65536):
            self.wfile.write(block)
        self.wfile.flush()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, port: int, protocol_v2: bool) -> None:
        self.root = root
        self.protocol_v2 = protocol_v2
        self.exec_path = _git_exec_path()
        super().__init__(("127.0.0.1", port), _Handler)


class GitServer(ThreadedHTTPService):
    """Smart-HTTP git server on 127.0.0.1; a context manager that starts and stops it."""

    service_name = "gitserver"

    def __init__(self, root: Path, *, port: int = 0, protocol_v2: bool = True) -> None:
        super().__init__()
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._port = port
        self._protocol_v2 = protocol_v2

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def _bind(self) -> _HTTPServer:
        return _HTTPServer(self.root, self._port, self._protocol_v2)

    def create_repo(
        self,
        owner: str,
        name: str,
        *,
        private_token: str | None = None,
        private_username: str | None = None,
    ) -> Repo:
        """An empty bare repository at ``ROOT/OWNER/NAME.git`` that accepts pushes.

        With ``private_token``, every request needs Basic auth with it as the password, and
        with ``private_username`` too, that username (any username otherwise).
        Calling it again for an existing repository returns it (and updates its privacy).
        """
        if private_username is not None and not private_token:
            raise ValueError("private_username needs a private_token")
        repo = Repo(self, _check_name(owner), _check_name(name))
        if not (repo.path / "HEAD").exists():
            repo.path.parent.mkdir(parents=True, exist_ok=True)
            _git("init", "-q", "--bare", str(repo.path))
            _git(f"--git-dir={repo.path}", "config", "http.receivepack", "true")
            _git(f"--git-dir={repo.path}", "config", "uploadpack.allowReachableSHA1InWant", "true")
        for filename, value in ((TOKEN_FILE, private_token), (USERNAME_FILE, private_username)):
            path = repo.path / filename
            if value:
                path.write_text(value + "\n")
                path.chmod(0o600)
            else:
                path.unlink(missing_ok=True)
        return repo

    def repos(self) -> Iterator[Repo]:
        """Every repository under the root."""
        for path in sorted(self.root.glob("*/*.git")):
            yield Repo(self, path.parent.name, path.name.removesuffix(".git"))


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve ROOT on 127.0.0.1 until killed")
    serve.add_argument("--root", type=Path, required=True, help="holds OWNER/NAME.git")
    serve.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    serve.add_argument("--repo", action="append", default=[], help="create OWNER/NAME (public)")
    serve.add_argument(
        "--private-repo",
        action="append",
        default=[],
        help="create OWNER/NAME, private with the token in $GITSERVER_TOKEN",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s gitserver %(message)s",
        stream=sys.stderr,
    )
    token = os.environ.get("GITSERVER_TOKEN", "")
    if args.private_repo and not token:
        parser.error("--private-repo needs the token in the GITSERVER_TOKEN environment variable")
    server = GitServer(args.root, port=args.port)
    for spec, private in [(r, False) for r in args.repo] + [(r, True) for r in args.private_repo]:
        owner, _, name = spec.partition("/")
        server.create_repo(owner, name, private_token=token if private else None)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with server:
        print(server.url, flush=True)
        for repo in server.repos():
            visibility = "private" if repo.token else "public"
            log.info("serving %s (%s)", repo.clone_url, visibility)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
