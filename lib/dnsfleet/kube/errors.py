"""What can go wrong talking to a cluster, as exceptions whose ``str()`` is one line.

- ``ConfigError``: the kubeconfig, a context or an argument is unusable; nothing was sent.
- ``KubeError``: a request did not succeed. ``status`` is the HTTP status (0: no answer), ``kind`` the
  short name callers branch on and record (forbidden, conflict, not-found, invalid, unreachable,
  unknown, error). When the request class knows the cluster's name, the line starts with it.
  - ``ResourceError``: the server answered with an error status (403, 404, 409, 410, 422, 5xx...).
  - ``ClusterFailed``: no usable answer (refused, timed out, TLS, 401, a body that is not JSON, an
    unusable kubeconfig context): ``reason`` says why in one line, without the cluster's name.
    ``outcome_unknown`` marks a write that was sent but never answered: it may or may not have been made.

Credentials never appear in any of them: every text goes through the one scrubber
(``dnsfleet.scrub``) when the error is made, and a server's error body when it is read.
"""

from __future__ import annotations

import email.utils
import time

import orjson

from dnsfleet.kube import proto
from dnsfleet.scrub import scrub

UNREACHABLE = "unreachable"
OUTCOME_UNKNOWN = "unknown"
_KINDS = {403: "forbidden", 409: "conflict", 404: "not-found", 422: "invalid", 0: UNREACHABLE}
_PREFIX = {401: "unauthorized", 403: "forbidden", 409: "conflict", 404: "not found", 422: "rejected"}
# Reasons of a server that could not be talked to at all (as opposed to one that answered badly).
_NO_ANSWER = ("unreachable:", "timed out", "TLS error")


class ConfigError(ValueError):
    """Kubeconfig or argument problem that stops the whole operation. ``str(err)`` is one line."""

    def __init__(self, message: object = "") -> None:
        super().__init__(scrub(str(message)))


def one_line(text: str) -> str:
    return " ".join(text.split())


class KubeError(Exception):
    """A request to a cluster that did not succeed (see the module docstring)."""

    def __init__(self, status: int, text: str, cluster: str | None = None) -> None:
        text = scrub(text)
        super().__init__(text)
        self.status = status
        self.text = text
        self.cluster = cluster

    @property
    def kind(self) -> str:
        """forbidden | conflict | not-found | invalid | unreachable | unknown | error"""
        return _KINDS.get(self.status, "error")

    def line(self) -> str:
        """The one-line text without the cluster's name."""
        return self.text

    def __str__(self) -> str:
        text = self.line()
        return f"{self.cluster}: {text}" if self.cluster else text


class ClusterFailed(KubeError):
    """Stop talking to this cluster; ``reason`` is the plain one-line explanation."""

    def __init__(
        self, reason: str, *, status: int = 0, outcome_unknown: bool = False, cluster: str | None = None
    ) -> None:
        super().__init__(status, reason, cluster)
        self.reason = self.text
        self.outcome_unknown = outcome_unknown

    @property
    def kind(self) -> str:
        return OUTCOME_UNKNOWN if self.outcome_unknown else super().kind

    def line(self) -> str:
        if self.status == 0 and not self.outcome_unknown and self.reason.startswith(_NO_ANSWER):
            return "API server unreachable: " + self.reason.removeprefix("unreachable: ")
        return self.reason


class ResourceError(KubeError):
    """An HTTP error status on one request (403, 404, 410, 5xx...)."""

    def __init__(
        self,
        status: int,
        reason: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        cluster: str | None = None,
    ) -> None:
        super().__init__(status, f"{status} {reason}", cluster)
        self.reason = scrub(reason)
        self.body = body or b""
        self.headers = headers or {}
        self.note = ""  # e.g. "gave up after 4 attempts", appended to message()

    def message(self) -> str:
        text = self.reason or f"HTTP {self.status}"
        if proto.is_protobuf(self.body):  # the Status of a request that asked for protobuf
            text = proto.status_message(self.body) or text
        else:
            text = self._json_message(text)
        text = scrub(text)
        return f"{text} ({self.note})" if self.note else text

    def _json_message(self, text: str) -> str:
        try:
            doc = orjson.loads(self.body)
            if isinstance(doc, dict) and isinstance(doc.get("message"), str):
                text = doc["message"]
        except orjson.JSONDecodeError:
            raw = self.body[:400].decode("utf-8", "replace").strip()
            if raw and raw.isprintable():
                text = raw.splitlines()[0][:200]
        return text

    def line(self) -> str:
        return f"{_PREFIX.get(self.status, f'HTTP {self.status}')}: {one_line(self.message())}"


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or bad."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())
