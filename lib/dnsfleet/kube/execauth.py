"""Kubeconfig ``exec`` credential plugins with a time limit and a plain failure reason.

The kubernetes client runs an exec plugin (``aws eks get-token``, ``kubelogin``, ``gke-gcloud-auth-plugin``)
with ``Popen.communicate()`` and no timeout, hands it the terminal's stdin when stdout is a TTY (a plugin
that prompts then waits for ever) and, when the plugin fails, only logs the error and goes on without
credentials, so the user sees a puzzling 401 later. ``install()`` swaps in ``TimedExecProvider``:

- the plugin gets no stdin (never interactive) and at most ``timeout`` seconds (``DNSFLEET_EXEC_TIMEOUT``,
  default 30); on expiry its whole process group is killed, so a shell wrapper's children die too;
- its output is read up to ``DNSFLEET_EXEC_MAX_OUTPUT_KB`` (default 1024): a plugin printing more is
  killed the same way (an ExecCredential is a few KB);
- the token it returns is trimmed (as kubectl does) and taught to the scrubber, with its client key;
- a failure is a one-line reason (``credential plugin 'x' failed (exit 1): <last stderr line>``) kept for
  the calling thread: ``take_error()`` returns it once the client is built, and the callers turn it
  into a failed cluster / a refused mitigation instead of an anonymous request.

The plugin's stdout (it holds the token) is never put in a message or a log.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import threading
import time
from typing import Any

from kubernetes.config import kube_config
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.exec_provider import ExecProvider

from dnsfleet.kube.bounds import max_exec_output_bytes, size_text
from dnsfleet.scrub import remember

DEFAULT_TIMEOUT_S = 30.0
_state = threading.local()
_lock = threading.Lock()


def exec_timeout() -> float:
    """Seconds an exec plugin may take: ``DNSFLEET_EXEC_TIMEOUT`` or 30."""
    raw = os.environ.get("DNSFLEET_EXEC_TIMEOUT", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def _fail(message: str) -> ConfigException:
    _state.error = message
    return ConfigException(message)


def take_error() -> str | None:
    """The last exec plugin failure on this thread (cleared by reading it)."""
    err = getattr(_state, "error", None)
    _state.error = None
    return err


def clear_error() -> None:
    _state.error = None


class TimedExecProvider(ExecProvider):
    """``ExecProvider`` with a timeout, no stdin and one-line failures (see the module docstring)."""

    def run(self, previous_response: Any = None) -> Any:
        name = os.path.basename(str(self.args[0])) or "?"
        timeout = exec_timeout()
        info: dict[str, Any] = {
            "apiVersion": self.api_version,
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
        if previous_response:
            info["spec"]["response"] = previous_response
        if self.cluster:
            info["spec"]["cluster"] = self.cluster.value
        env = dict(self.env)
        env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
        try:
            proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env=env,
                start_new_session=True,  # its own process group: a timeout kills the children too
            )
        except OSError as e:
            raise _fail(
                f"credential plugin {name!r} cannot start: {e.strerror or type(e).__name__}"
            ) from None
        cap = max_exec_output_bytes()
        try:
            out, err = _communicate_capped(proc, timeout, cap)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise _fail(f"credential plugin {name!r} did not answer within {timeout:g} s (killed)") from None
        except _TooMuch:
            _kill_group(proc)
            raise _fail(
                f"credential plugin {name!r} printed more than {size_text(cap)} "
                "(DNSFLEET_EXEC_MAX_OUTPUT_KB; killed)"
            ) from None
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        if proc.returncode != 0:
            last = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
            detail = f": {last[-1][:160]}" if last else ""
            raise _fail(f"credential plugin {name!r} failed (exit {proc.returncode}){detail}")
        try:
            data = json.loads(stdout)
        except ValueError:
            raise _fail(f"credential plugin {name!r} printed no ExecCredential JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("status"), dict):
            raise _fail(f"credential plugin {name!r} printed an ExecCredential without status")
        if data.get("apiVersion") != self.api_version:
            raise _fail(
                f"credential plugin {name!r} answered apiVersion {str(data.get('apiVersion'))[:60]!r}, "
                f"expected {self.api_version!r}"
            )
        status = data["status"]
        if isinstance(status.get("token"), str):
            status["token"] = status["token"].strip()  # kubectl trims it too
        if not status.get("token") and not status.get("clientCertificateData"):
            raise _fail(f"credential plugin {name!r} returned neither a token nor a client certificate")
        remember(status.get("token"), status.get("clientKeyData"))
        return status


class _TooMuch(Exception):
    pass


def _communicate_capped(proc: subprocess.Popen, timeout: float, cap: int) -> tuple[bytes, bytes]:
    """stdout (at most ``cap`` bytes, else ``_TooMuch``) and the last 64 KiB of stderr of ``proc``
    within ``timeout`` seconds (else ``subprocess.TimeoutExpired``)."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    err = bytearray()
    with selectors.DefaultSelector() as sel:
        for pipe, buf in ((proc.stdout, out), (proc.stderr, err)):
            if pipe is not None:
                sel.register(pipe, selectors.EVENT_READ, buf)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = key.data
                buf += chunk
                if buf is out and len(out) > cap:
                    raise _TooMuch
                if buf is err and len(err) > 65536:
                    del err[: len(err) - 65536]
    proc.wait(max(0.0, deadline - time.monotonic()))
    return bytes(out), bytes(err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=5)


def install() -> None:
    """Make the kubernetes client's kubeconfig loader use ``TimedExecProvider`` (idempotent)."""
    with _lock:
        if kube_config.ExecProvider is not TimedExecProvider:
            kube_config.ExecProvider = TimedExecProvider
