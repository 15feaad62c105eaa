"""A real OCI distribution registry (Debian's ``docker-registry``) on 127.0.0.1 for tests.

Each instance runs its own ``docker-registry`` process with its own config, storage and log in a
temporary directory, on a free loopback port; ``stop()`` ends the process and removes the
directory, so nothing is left behind. Authentication, by choice:

- none (anyone may pull and push);
- htpasswd Basic auth (``users={"alice": "secret"}``; bcrypt hashes, as the registry requires);
- token auth (``token=TokenServer(...)`` from ``tests/support/tokenserver.py``): the registry
  answers ``401`` with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` and accepts
  the JWTs that token server signs, like Docker Hub, Harbor or GHCR.

Plain HTTP by default; ``tls=True`` serves HTTPS with a self-signed certificate for 127.0.0.1
and localhost whose PEM is ``registry.ca_pem`` (a registry with a private CA).

Library use::

    with Registry(users={"alice": "secret"}) as registry:
        registry.host   # "127.0.0.1:PORT", for image references: f"{registry.host}/team/app:1"
        registry.url    # "http://127.0.0.1:PORT"

The binary is installed by ``make registry`` (apt-get, idempotent); ``REGISTRY_BINARY``
overrides its path.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import bcrypt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.certificates import self_signed_certificate
from tests.support.httpserver import Service

if TYPE_CHECKING:
    from tests.support.tokenserver import TokenServer

__all__ = ["Registry", "RegistryError", "TokenRegistry", "registry_binary"]

DEFAULT_BINARY = "/usr/bin/docker-registry"
# Start-up is a fraction of a second; the deadline only bounds a registry that never answers.
START_DEADLINE_S = 60.0
STOP_GRACE_S = 10.0


class RegistryError(RuntimeError):
    """The registry could not be started (missing binary, bad config, no answer)."""


def registry_binary() -> str:
    """The path of ``docker-registry``; a clear error (with the install hint) when missing."""
    binary = os.environ.get("REGISTRY_BINARY") or shutil.which("docker-registry") or DEFAULT_BINARY
    if not Path(binary).is_file():
        raise RegistryError(
            f"docker-registry not found at {binary}: run `make registry` "
            "(apt-get install docker-registry) or set REGISTRY_BINARY"
        )
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _htpasswd(users: Mapping[str, str]) -> str:
    """htpasswd lines with bcrypt hashes: the only scheme distribution's htpasswd accepts."""
    lines = []
    for user, password in users.items():
        if not user or ":" in user:
            raise ValueError(f"invalid htpasswd user name: {user!r}")
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        lines.append(f"{user}:{hashed}\n")
    return "".join(lines)


def _self_signed_tls() -> tuple[bytes, bytes]:
    """A self-signed server certificate for 127.0.0.1 and localhost, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_certificate(
        key,
        "autobuild test registry",
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class Registry(Service):
    """One ``docker-registry`` process on ``127.0.0.1:<free port>`` with its own temp dir."""

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        token: TokenServer | None = None,
        tls: bool = False,
        workdir: Path | None = None,
    ) -> None:
        if users and token is not None:
            raise ValueError("choose htpasswd users or a token server, not both")
        self.users = dict(users or {})
        self.token = token
        # HTTPS with a self-signed certificate for 127.0.0.1 (clients trust ``ca_pem``).
        self.tls = tls
        self.ca_pem = b""
        self._parent = workdir
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.port = 0

    # -- addresses -----------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the registry part of image references."""
        self._require_running()
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (plain HTTP: list ``host`` as an insecure registry), or
        ``https://`` with ``tls=True``."""
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def log_path(self) -> Path:
        """The registry's own log (useful in a failing test's output)."""
        if self._dir is None:
            raise RegistryError("registry not started")
        return self._dir / "registry.log"

    def log_text(self) -> str:
        """The registry's log so far."""
        return self.log_path.read_text(errors="replace")

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Registry:
        """Write the config, start the process, wait until ``/v2/`` answers; returns self."""
        if self._proc is not None:
            raise RegistryError("registry already started")
        binary = registry_binary()
        self._dir = Path(tempfile.mkdtemp(prefix="registry-", dir=self._parent))
        try:
            # A port found free can be taken before the registry binds it: try a few.
            for _attempt in range(5):
                self.port = _free_port()
                config = self._dir / "config.yml"
                config.write_text(yaml.safe_dump(self._config()))
                self._log = (self._dir / "registry.log").open("ab")
                self._proc = subprocess.Popen(
                    [binary, "serve", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                    cwd=self._dir,
                    env={"PATH": os.environ.get("PATH", os.defpath)},
                )
                if self._wait_ready():
                    return self
                self._end_process()
                if "address already in use" not in self.log_text():
                    break
            raise RegistryError(f"docker-registry did not start; log:\n{self.log_text()[-4000:]}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """End the process and remove the temp dir; idempotent."""
        self._end_process()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- internals -----------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        assert self._dir is not None
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self._dir / "data")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": f"127.0.0.1:{self.port}",
                # Fixed per instance: upload state is signed with it.
                "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        if self.tls:
            cert, key = _self_signed_tls()
            self.ca_pem = cert
            (self._dir / "tls.crt").write_bytes(cert)
            (self._dir / "tls.key").write_bytes(key)
            config["http"]["tls"] = {
                "certificate": str(self._dir / "tls.crt"),
                "key": str(self._dir / "tls.key"),
            }
        if self.users:
            htpasswd = self._dir / "htpasswd"
            htpasswd.write_text(_htpasswd(self.users))
            config["auth"] = {"htpasswd": {"realm": "autobuild-test", "path": str(htpasswd)}}
        elif self.token is not None:
            bundle = self._dir / "token-roots.pem"
            bundle.write_bytes(self.token.certificate_pem)
            config["auth"] = {
                "token": {
                    "realm": self.token.realm,
                    "service": self.token.service,
                    "issuer": self.token.issuer,
                    "rootcertbundle": str(bundle),
                }
            }
        return config

    def _wait_ready(self) -> bool:
        """Poll ``/v2/`` until it answers (200, or 401 with auth); False if the process died."""
        assert self._proc is not None
        deadline = time.monotonic() + START_DEADLINE_S
        url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v2/"
        context = ssl.create_default_context(cadata=self.ca_pem.decode()) if self.tls else None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    return bool(response.status == 200)
            except urllib.error.HTTPError as error:
                if error.code == 401:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _end_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def _require_running(self) -> None:
        if self._proc is None or self._dir is None:
            raise RegistryError("registry not started")


@dataclass(frozen=True)
class TokenRegistry:
    """A token-auth registry and the token server it trusts (for fixtures)."""

    registry: Registry
    tokens: TokenServer
