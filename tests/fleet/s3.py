"""A real S3-compatible server for the snapshot-store tests: versitygw (posix backend) on 127.0.0.1.

``tests/fleet/build.sh versitygw`` builds it from its Go module into ``~/.cache/dnsfleet/versitygw/<v>/``
(``make test`` runs ``build.sh all``, which includes it). ``S3Server(root).start()`` serves one bucket
(``dnsfleet``) from ``root``, with random root credentials handed to clients through the environment
(``env``), never in a URL. ``pause()`` / ``resume()`` freeze the process (SIGSTOP/SIGCONT): a server that
accepts connections but answers nothing, the "slow mid-run" fault, with no mock.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.fleet.fleet import FleetError, free_port

HERE = Path(__file__).resolve().parent
BUCKET = "dnsfleet"


def binary() -> Path:
    out = subprocess.run(
        ["bash", str(HERE / "build.sh"), "print-versitygw"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(out)


class S3Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.access_key = "dnsfleet-" + secrets.token_hex(4)
        self.secret_key = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, prefix: str = "fleet") -> str:
        return f"s3://{BUCKET}/{prefix}?endpoint={self.endpoint}&timeout=3&retries=1"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def start(self, timeout: float = 20.0) -> S3Server:
        exe = binary()
        if not os.access(exe, os.X_OK):
            raise FleetError(f"versitygw is not built at {exe}: run bash tests/fleet/build.sh versitygw")
        data, side = self.root / "data", self.root / "meta"
        (data / BUCKET).mkdir(parents=True, exist_ok=True)
        side.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ROOT_ACCESS_KEY_ID": self.access_key,
            "ROOT_SECRET_ACCESS_KEY": self.secret_key,
        }
        log = open(self.root / "versitygw.log", "ab")  # noqa: SIM115 - lives as long as the process
        argv = [
            str(exe),
            "--port",
            f"127.0.0.1:{self.port}",
            "--quiet",
            "posix",
            "--sidecar",
            str(side),
            str(data),
        ]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise FleetError(f"versitygw exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise FleetError(f"versitygw did not listen on 127.0.0.1:{self.port} within {timeout}s")

    def log_tail(self, n: int = 5) -> str:
        try:
            return " | ".join((self.root / "versitygw.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
