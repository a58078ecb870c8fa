"""How dnsfleet talks to a Prometheus-compatible HTTP API: the source settings, credentials and the client.

Credentials: a bearer token or basic auth (user + password), from a file or the environment
(``credentials``), never from a URL shown to anyone. A URL's ``user:password@`` is taken out of it
(``PromSource``): the URL in notes, errors and snapshots has none, and the scrubber knows the values.
Every request has a wall-clock deadline and a byte cap (``kube.bounds``). What is read with it (CoreDNS
and conntrack series) is ``collect.prom``.
"""

from __future__ import annotations

import base64
import math
import os
import re
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import orjson
import urllib3

from dnsfleet.kube.bounds import Deadline, TooLarge, max_response_bytes, read_capped, track_pool_manager
from dnsfleet.scrub import remember, scrub


class PromError(RuntimeError):
    """A Prometheus request failed. ``str(err)`` is one line, without credentials."""

    def __init__(self, message: object = "") -> None:
        super().__init__(scrub(str(message)))


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its ``user:password@`` part, and the (unquoted) user and password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) or None, unquote(password) if sep else None


def display_url(url: str) -> str:
    """The URL as it may be shown: without credentials."""
    return split_userinfo(url)[0]


def _secret_file(path: str, what: str) -> str:
    try:
        p = Path(path).expanduser()
        if p.is_file() and p.stat().st_size > 64 * 1024:
            raise ValueError(f"{what} {path} is larger than 64 KiB; not a token or password")
        value = p.read_text().strip()
    except OSError as e:
        raise ValueError(f"cannot read {what} {path}: {e.strerror or type(e).__name__}") from None
    if not value:
        raise ValueError(f"{what} {path} is empty")
    return value


def credentials(
    token_file: str | None = None,
    user: str | None = None,
    password_file: str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """Prometheus credentials for ``PromSource(**...)``: the arguments (the CLI's flags), else the
    environment: ``DNSFLEET_PROMETHEUS_TOKEN_FILE`` or ``DNSFLEET_PROMETHEUS_TOKEN`` (bearer), or
    ``DNSFLEET_PROMETHEUS_USER`` with ``DNSFLEET_PROMETHEUS_PASSWORD_FILE`` or
    ``DNSFLEET_PROMETHEUS_PASSWORD`` (basic auth). Files are trimmed. Raises ValueError (one line)."""
    env = os.environ if env is None else env
    token_file = token_file or env.get("DNSFLEET_PROMETHEUS_TOKEN_FILE") or None
    token = _secret_file(token_file, "Prometheus token file") if token_file else None
    token = token or (env.get("DNSFLEET_PROMETHEUS_TOKEN") or "").strip() or None
    user = user or (env.get("DNSFLEET_PROMETHEUS_USER") or "").strip() or None
    password_file = password_file or env.get("DNSFLEET_PROMETHEUS_PASSWORD_FILE") or None
    password = _secret_file(password_file, "Prometheus password file") if password_file else None
    password = password or (env.get("DNSFLEET_PROMETHEUS_PASSWORD") or "").strip() or None
    if password and not user:
        raise ValueError("a Prometheus password needs a user (--prometheus-user or DNSFLEET_PROMETHEUS_USER)")
    if token and user:
        raise ValueError("give Prometheus either a bearer token or a user and password, not both")
    return {"token": token, "username": user, "password": password}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def operator_credentials(url: str, env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The environment's credentials (``credentials``, and a ``user:password@`` in
    ``DNSFLEET_PROMETHEUS``) for ``url``, but only when ``url`` is the operator's
    ``DNSFLEET_PROMETHEUS`` (same scheme, host and port): a URL typed by a dashboard visitor never
    gets them. Raises ValueError (one line) when the environment's settings are unusable."""
    env = os.environ if env is None else env
    configured = (env.get("DNSFLEET_PROMETHEUS") or "").strip()
    if not configured or _origin(configured) != _origin(url):
        return {}
    creds = credentials(env=env)
    _, user, password = split_userinfo(configured)
    if user and not creds["token"] and not creds["username"]:
        creds["username"], creds["password"] = user, password
    return {k: v for k, v in creds.items() if v is not None}


@dataclass(frozen=True)
class PromSource:
    """Where and how to query. ``time`` is the evaluation time (epoch s, default now)."""

    url: str
    token: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cluster_label: str = "cluster"
    time: float | None = None
    window_s: float = 3600.0
    series_range_s: float = 3 * 3600.0
    step_s: float = 60.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        clean, user, password = split_userinfo(self.url)
        if clean != self.url:  # credentials never stay in the URL that notes and errors show
            object.__setattr__(self, "url", clean)
            if self.username is None and self.token is None and user:
                object.__setattr__(self, "username", user)
                object.__setattr__(self, "password", password)
        if self.token is not None:
            object.__setattr__(self, "token", self.token.strip())
        remember(self.token, self.password)
        if self.username is not None:
            remember(base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode())
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            shown = self.url if "@" not in self.url else "…@" + self.url.rsplit("@", 1)[-1]
            raise ValueError(f"Prometheus URL must be http(s)://host[:port][/path], got {shown!r}")
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", self.cluster_label):
            raise ValueError(f"cluster label {self.cluster_label!r} is not a valid Prometheus label name")
        if self.window_s <= 0 or self.step_s <= 0 or self.series_range_s < 0:
            raise ValueError("Prometheus window, step and range must be positive")

    def __repr__(self) -> str:  # never show credentials
        return f"PromSource(url={self.url!r}, cluster_label={self.cluster_label!r})"

    def selector(self, cluster: str) -> str:
        """The label matcher that picks ``cluster``'s series (``cluster="name"``, the value escaped)."""
        escaped = cluster.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.cluster_label}="{escaped}"'


class PromClient:
    """Queries for one cluster. Every request has ``src.timeout``; all of them together get
    ``budget_s`` (default ``max(30, 3 * timeout)``): a Prometheus that answers slowly, just inside the
    timeout each time, cannot stretch a scan for minutes. Warnings in answers (partial data from
    Thanos/Mimir, a query limit hit) are kept in ``warnings`` for the metrics note."""

    def __init__(self, src: PromSource, budget_s: float | None = None) -> None:
        self.src = src
        self.budget_s = max(30.0, 3 * src.timeout) if budget_s is None else budget_s
        self.deadline = _time.monotonic() + self.budget_s
        self.warnings: list[str] = []
        self.malformed = 0  # result entries skipped because their shape was wrong
        self.base = src.url.rstrip("/")
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        if src.token:
            headers["Authorization"] = f"Bearer {src.token}"
        elif src.username is not None:
            cred = base64.b64encode(f"{src.username}:{src.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {cred}"
        self.headers = headers
        kw: dict[str, Any] = {"retries": False, "timeout": urllib3.Timeout(total=src.timeout)}
        if src.ca_file:
            kw["ca_certs"] = src.ca_file
        self.http = track_pool_manager(urllib3.PoolManager(**kw))

    def _post(self, path: str, params: dict[str, Any]) -> Any:
        url = self.base + path
        left = self.deadline - _time.monotonic()
        if left <= 0:
            raise PromError(
                f"Prometheus at {self.base} too slow: gave up after {self.budget_s:g} s of queries"
            )
        timeout = min(self.src.timeout, max(left, 0.1))
        with Deadline(timeout) as deadline:
            try:
                resp = self.http.request(
                    "POST",
                    url,
                    body=urlencode(params),
                    headers=self.headers,
                    timeout=urllib3.Timeout(total=timeout),
                    preload_content=False,
                )
                try:
                    raw = read_capped(resp, max_response_bytes(), deadline)
                finally:
                    resp.release_conn()
            except TooLarge as e:
                raise PromError(
                    f"Prometheus at {self.base}{path}: answer too large: {e} (DNSFLEET_MAX_RESPONSE_MB)"
                ) from None
            except urllib3.exceptions.NewConnectionError as e:  # a ConnectTimeoutError: test it first
                why = "connection refused" if "refused" in str(e).lower() else "cannot connect"
                raise PromError(f"Prometheus at {self.base} not reachable: {why}") from None
            except (urllib3.exceptions.HTTPError, OSError) as e:
                timed_out = isinstance(e, urllib3.exceptions.TimeoutError | TimeoutError)
                if not (deadline.expired or timed_out):
                    reason = getattr(e, "reason", None) or e
                    text = str(reason).lower()
                    why = "connection refused" if "refused" in text else type(reason).__name__
                    if "certificate" in text or "ssl" in text:
                        why = "TLS error"
                    raise PromError(f"Prometheus at {self.base} not reachable: {why}") from None
                if left < self.src.timeout:  # cut short by the overall budget, not the request timeout
                    raise PromError(
                        f"Prometheus at {self.base} too slow: gave up after {self.budget_s:g} s of queries"
                    ) from None
                raise PromError(f"Prometheus at {self.base} timed out after {self.src.timeout:g} s") from None
        if deadline.expired:
            raise PromError(f"Prometheus at {self.base} timed out after {self.src.timeout:g} s")
        if resp.status in (401, 403):
            raise PromError(f"Prometheus at {self.base} refused the credentials (HTTP {resp.status})")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise PromError(f"Prometheus at {self.base}{path}: HTTP {resp.status}, not JSON") from None
        if not isinstance(doc, dict):
            raise PromError(f"Prometheus at {self.base}{path}: HTTP {resp.status}, not an API answer")
        if doc.get("status") != "success":
            err = " ".join(str(doc.get("error") or f"HTTP {resp.status}").split())[:200]
            raise PromError(f"Prometheus query failed: {err}")
        for w in doc.get("warnings") or []:
            text = " ".join(str(w).split())[:200]
            if text and text not in self.warnings:
                self.warnings.append(text)
        data = doc.get("data") or {}
        if not isinstance(data, dict):
            raise PromError(f"Prometheus at {self.base}{path}: 'data' is not an object")
        return data

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float | None]]:
        data = self._post("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        result = data.get("result")
        if data.get("resultType") == "scalar":
            return [({}, sample_value(sample_pair(result)[1]))] if sample_pair(result) else []
        out = []
        for r in result if isinstance(result, list) else []:
            pair = sample_pair(r.get("value")) if isinstance(r, dict) else None
            if pair is None:
                self.malformed += 1
                continue
            out.append((sample_labels(r.get("metric")), sample_value(pair[1])))
        return out

    def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float | None]]]]:
        data = self._post(
            "/api/v1/query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        out = []
        result = data.get("result")
        for r in result if isinstance(result, list) else []:
            values = r.get("values") if isinstance(r, dict) else None
            if not isinstance(values, list):
                self.malformed += 1
                continue
            points = []
            for v in values:
                pair = sample_pair(v)
                t = sample_value(pair[0]) if pair else None
                if t is None:
                    self.malformed += 1
                    continue
                points.append((t, sample_value(pair[1])))  # type: ignore[index]
            out.append((sample_labels(r.get("metric")), points))
        return out

    def range_grid(
        self, expr: str, start: float, end: float, step: float, n: int, scale: float = 1.0
    ) -> list[float | None] | None:
        """The first series of a range query on ``n`` steps from ``start`` (``on_grid``); None when the
        query matched no series."""
        res = self.query_range(expr, start, end, step)
        return on_grid(res[0][1], start, step, n, scale) if res else None


def sample_pair(v: Any) -> tuple[Any, Any] | None:
    """A ``[time, "value"]`` sample, or None when it has another shape."""
    return (v[0], v[1]) if isinstance(v, list | tuple) and len(v) == 2 else None


def sample_labels(v: Any) -> dict[str, str]:
    return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else {}


def sample_value(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def on_grid(
    points: Sequence[tuple[float, float | None]], start: float, step: float, n: int, scale: float = 1.0
) -> list[float | None]:
    """Samples ``(t, value)`` placed on ``n`` steps from ``start``, times ``scale`` (steps without a
    finite sample: None)."""
    out: list[float | None] = [None] * n
    for t, v in points:
        i = round((t - start) / step)
        if 0 <= i < n and v is not None and math.isfinite(v):
            out[i] = v * scale
    return out
