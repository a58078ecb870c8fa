"""The one request class: every call to an API server, whatever the verb, goes through ``Api``.

For every request: a timeout (``_request_timeout``) per wait for bytes, a wall-clock deadline of the
same length for the whole request (``kube.bounds``: a server that trickles its answer cannot stretch
it), a byte cap on the body (``DNSFLEET_MAX_RESPONSE_MB``), one-line error reasons with credentials
scrubbed (``dnsfleet.scrub``), and a deadline for the retries (``retry_budget``, default twice the
timeout, on top of the attempts). The Authorization header is sent trimmed, as kubectl does: a token
written with ``echo`` (ending in a newline) works instead of failing with the token in the error.

Retries, with exponential backoff and jitter, never sooner than the server's ``Retry-After``, at most
``MAX_RETRIES`` times and while the retry budget lasts:

- reads (GET): 429 and 5xx answers and refused or reset connections are tried again; timeouts and TLS
  errors are not (they would only multiply the wait);
- writes (POST, PATCH, PUT, DELETE): only a refused connection is tried again, the one failure where
  the request was certainly never sent. Any other failure after sending is ``outcome_unknown``: the
  change may or may not have been made.

Bodies are read raw (``_preload_content=False``); ``get`` parses JSON with orjson.
"""

from __future__ import annotations

import logging
import random
import re
import ssl
import time
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from dnsfleet.kube import bounds
from dnsfleet.kube.config import IMPERSONATE_GROUPS_ATTR
from dnsfleet.kube.errors import ClusterFailed, ResourceError, one_line, retry_after
from dnsfleet.scrub import remember, scrub

log = logging.getLogger("dnsfleet.kube")

JSON = "application/json"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRIES = 6
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 4.0
READS = frozenset({"GET", "HEAD"})


class Api:
    """Raw requests against one cluster (see the module docstring).

    ``cluster`` names the cluster in the errors' one-line text (``str(err)``); a scan leaves it out,
    its failed row names the cluster already.
    """

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        timeout: float,
        *,
        max_retries: int = MAX_RETRIES,
        retry_budget: float | None = None,
        cluster: str | None = None,
    ) -> None:
        self.client = api_client
        self.timeout = timeout
        self.server = api_client.configuration.host
        self.cluster = cluster
        self.max_retries = max_retries
        self.retry_budget = 2 * timeout if retry_budget is None else retry_budget
        self.retried = 0  # requests repeated so far (429, 5xx, refused): for tests and logs
        self.last_path = ""  # the path of the latest request (names what failed mid-scan)
        self._rng = random.Random()
        self._groups = tuple(getattr(api_client, IMPERSONATE_GROUPS_ATTR, ()))
        for v in (api_client.configuration.api_key or {}).values():
            if isinstance(v, str):
                remember(v.split(" ", 1)[-1])
        pool = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
        if pool is not None:
            bounds.track_pool_manager(pool)

    # -- reads ---------------------------------------------------------------------------------------

    def get(self, path: str, query: dict[str, Any] | None = None, accept: str = JSON) -> Any:
        """GET ``path`` and return the parsed JSON. Raises ResourceError or ClusterFailed."""
        data = self.get_bytes(path, query, accept)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ClusterFailed(
                f"bad response from {self.server}{path}: not JSON", cluster=self.cluster
            ) from None

    def version(self) -> Any:
        """GET ``/version``, the first request of a scan. An error status there (a 5xx, a proxy's HTML
        502) fails the cluster with a reason naming the status, not as an internal error."""
        try:
            return self.get("/version")
        except ResourceError as e:
            what = e.line()
            if e.body.lstrip()[:1] == b"<":  # a proxy's error page: its markup says nothing more
                what = f"HTTP {e.status} {e.reason}".strip() + (f" ({e.note})" if e.note else "")
                what += "; an HTML page, not the API server (a proxy or load balancer in front of it?)"
            raise ClusterFailed(
                f"{what} on {self.server}/version", status=e.status, cluster=self.cluster
            ) from None

    def get_bytes(self, path: str, query: dict[str, Any] | None = None, accept: str = JSON) -> bytes:
        """GET with the read retries (429/5xx, refused or reset connections)."""
        return self._retrying("GET", path, lambda: self._get_once(path, query, accept))

    def _get_once(self, path: str, query: dict[str, Any] | None, accept: str) -> bytes:
        return self._once("GET", path, query, None, JSON, accept)

    # -- every verb ----------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = JSON,
        accept: str = JSON,
    ) -> bytes:
        """Send one request and return the response body; reads get the read retries, writes only
        the retry of a refused connection. Raises ResourceError or ClusterFailed."""
        method = method.upper()
        q = {k: v for k, v in (query or {}).items() if v is not None}
        if method in READS and body is None:
            return self.get_bytes(path, q or None, accept)
        return self._retrying(method, path, lambda: self._once(method, path, q, body, content_type, accept))

    def _retrying(self, method: str, path: str, once: Any) -> bytes:
        read = method in READS
        waited = 0.0
        attempt = 0
        while True:
            try:
                return once()
            except ResourceError as e:
                if not read or e.status not in RETRY_STATUSES:
                    raise
                after = retry_after(e.headers)
                wait = self._wait(attempt, after)
                if attempt >= self.max_retries or waited + wait > self.retry_budget:
                    if e.status == 429:
                        e.reason = e.reason or "Too Many Requests"
                        e.note = f"throttled; gave up after {_attempts(attempt + 1)}"
                    elif attempt:
                        e.note = f"gave up after {_attempts(attempt + 1)}"
                    raise
                why = f"HTTP {e.status}" + (f", Retry-After {after:g} s" if after is not None else "")
            except ClusterFailed as e:
                if not _retryable(e, read):
                    raise
                wait = self._wait(attempt, None)
                if attempt >= self.max_retries or waited + wait > self.retry_budget:
                    if attempt:
                        raise ClusterFailed(
                            f"{e.reason} (gave up after {_attempts(attempt + 1)})", cluster=self.cluster
                        ) from None
                    raise
                why = e.reason
            attempt += 1
            self.retried += 1
            log.info("%s %s%s: %s; retry %d in %.2f s", method, self.server, path, why, attempt, wait)
            time.sleep(wait)
            waited += wait

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half fixed, half random), never below Retry-After."""
        backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2**attempt))
        wait = backoff / 2 + self._rng.uniform(0, backoff / 2)
        if retry_after is not None:
            wait = max(wait, retry_after + self._rng.uniform(0, min(1.0, retry_after) * 0.2))
        return wait

    def _once(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None,
        body: Any,
        content_type: str,
        accept: str,
    ) -> bytes:
        self.last_path = path
        url_path = path + ("?" + urlencode(query, doseq=True) if query else "")
        _method, url, headers, _body, _post = self.client.param_serialize(
            method=method,
            resource_path=url_path,
            header_params={"Accept": accept},
            auth_settings=["BearerToken"],
        )
        hdrs = urllib3.HTTPHeaderDict(headers)
        for name in [k for k in hdrs if k.lower() in ("authorization", "proxy-authorization")]:
            # kubectl trims the token: a newline written by `echo` or `token: |` is not part of it
            scheme, _, cred = hdrs[name].strip().partition(" ")
            value = f"{scheme} {cred.strip()}" if cred else scheme
            if any(c in value for c in "\r\n\0"):
                raise ClusterFailed(
                    "kubeconfig: the credential has a line break inside it; not sent", cluster=self.cluster
                )
            hdrs[name] = value
        for g in self._groups:
            hdrs.add("Impersonate-Group", g)
        if body is not None:
            hdrs["Content-Type"] = content_type
        cap = bounds.max_response_bytes()
        with bounds.Deadline(self.timeout) as deadline:
            try:
                rest = self.client.call_api(
                    method, url, header_params=hdrs, body=body, _request_timeout=self.timeout
                )
                resp = rest.response
                try:
                    data = bounds.read_capped(resp, cap, deadline)
                except bounds.TooLarge as e:
                    resp.close()
                    raise ClusterFailed(
                        f"response too large from {self.server}{path}: {e} (DNSFLEET_MAX_RESPONSE_MB)",
                        cluster=self.cluster,
                    ) from None
                finally:
                    resp.release_conn()
            except ClusterFailed:
                raise
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ssl.SSLError) as e:
                # The REST layer wraps TLS errors as ApiException status 0.
                if deadline.expired:
                    raise self._deadline_error(method, path) from None
                raise self._transport_error(method, path, e) from None
            except ValueError:
                # http.client refuses a header value with a control character; its message quotes
                # the value (the token), so it is never shown.
                raise ClusterFailed(
                    f"kubeconfig: a request header for {self.server} holds a character HTTP does not "
                    "allow (check the credentials and impersonation names)",
                    cluster=self.cluster,
                ) from None
        if deadline.expired:
            raise self._deadline_error(method, path)
        if resp.status == 401:
            raise ClusterFailed(
                f"unauthorized: {self.server} rejected the credentials (401)",
                status=401,
                cluster=self.cluster,
            )
        if not 200 <= resp.status <= 299:
            raise ResourceError(
                resp.status, resp.reason or "", data, dict(resp.headers or {}), cluster=self.cluster
            )
        return data

    def _deadline_error(self, method: str, path: str) -> ClusterFailed:
        """The request's deadline passed: the same words as a socket timeout (whichever ends it first)."""
        if method not in READS:
            return ClusterFailed(
                f"no answer after sending {method} {path} (timed out after {self.timeout:g} s): the change "
                "may or may not have been made; check the object before retrying",
                outcome_unknown=True,
                cluster=self.cluster,
            )
        return ClusterFailed(
            f"timed out after {self.timeout:g} s talking to {self.server}", cluster=self.cluster
        )

    def _transport_error(self, method: str, path: str, e: BaseException) -> ClusterFailed:
        if method not in READS and not _before_sending(e):
            cause = getattr(e, "reason", None)
            name = type(cause if isinstance(cause, BaseException) else e).__name__
            return ClusterFailed(
                self.scrub(
                    f"no answer after sending {method} {path} ({name}): the change may or may not "
                    "have been made; check the object before retrying"
                ),
                outcome_unknown=True,
                cluster=self.cluster,
            )
        return ClusterFailed(
            self.scrub(_transport_reason(e, self.server, self.timeout)), cluster=self.cluster
        )

    def scrub(self, text: str) -> str:
        """``dnsfleet.scrub``: the one scrubber."""
        return scrub(text)


def _retryable(e: ClusterFailed, read: bool) -> bool:
    """A refused connection is always worth another try; a connection closed on a read too."""
    if e.outcome_unknown or not e.reason.startswith("unreachable:"):
        return False
    return "connection refused" in e.reason or (read and "closed the connection" in e.reason)


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


def _chain(e: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        nxt = getattr(cur, "reason", None)
        cur = nxt if isinstance(nxt, BaseException) else (cur.__cause__ or cur.__context__)
    return chain


def _before_sending(e: BaseException) -> bool:
    """The connection never opened (refused, no route, name not resolved, connect timeout): nothing of
    the request reached the server."""
    connect = urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    return any(isinstance(x, connect | ConnectionRefusedError) for x in _chain(e))


def _transport_reason(e: BaseException, server: str, timeout: float) -> str:
    """Plain one-line reason for a connection-level failure."""
    chain = _chain(e)
    text = " ".join(one_line(str(x)) for x in chain)
    low = text.lower()
    refused = any(
        isinstance(x, urllib3.exceptions.NewConnectionError | ConnectionRefusedError) for x in chain
    )
    timeout_types = urllib3.exceptions.TimeoutError | TimeoutError
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2.x, so a refusal is not a timeout
    if not refused and (any(isinstance(x, timeout_types) for x in chain) or "timed out" in low):
        return f"timed out after {timeout:g} s talking to {server}"
    if (isinstance(e, ApiException) and e.status == 0) or any(isinstance(x, ssl.SSLError) for x in chain):
        detail = "certificate verify failed" if "certificate verify failed" in low else "handshake failed"
        m = re.search(r"certificate verify failed: ([^()\]]+)", text)
        if m:
            detail = f"certificate verify failed: {m.group(1).strip()}"
        return f"TLS error: {detail} for {server}"
    if "connection refused" in low:
        return f"unreachable: connection refused to {server}"
    if "name or service not known" in low or "nodename nor servname" in low or "failed to resolve" in low:
        return f"unreachable: cannot resolve the host of {server}"
    if "no route to host" in low or "network is unreachable" in low:
        return f"unreachable: no route to {server}"
    if "remote end closed" in low or "connection reset" in low or "protocolerror" in low:
        return f"unreachable: {server} closed the connection"
    return f"unreachable: {server} ({type(chain[-1]).__name__})"
