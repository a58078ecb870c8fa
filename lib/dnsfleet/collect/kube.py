"""Read clusters through the Kubernetes API into snapshot cluster dicts (format: ``dnsfleet.snapshot``).

One ``ApiClient`` per kubeconfig context (``kubernetes.config.new_client_from_config``), never the
process-global default configuration. Every request carries ``_request_timeout`` and is read as raw JSON
(``_preload_content=False``) parsed with orjson; only the projected fields are kept, page by page, so
memory grows with the projected rows, not with the raw responses. No kubernetes model objects, no
Secrets, no env values, and of annotations only ``dnsfleet.io/resolver``.

Failures stay inside the cluster they happen in: an unreachable, timed-out, TLS-broken or unauthorized
cluster comes back as ``status: "failed"`` with a one-line ``reason``; a 403 on some resources gives
``status: "partial"`` with those resources in ``missing`` and the parts they feed left ``null``.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from dnsfleet.collect import dnsfacts, execauth, proto, typed
from dnsfleet.snapshot import RESOLVER_ANNOTATION, now_iso

log = logging.getLogger("dnsfleet.collect")

Progress = Callable[[str, str, str], None]

KUBE_SYSTEM = "kube-system"
IN_CLUSTER = "in-cluster"

# Node labels kept in the snapshot: pool, instance type, zone, OS/arch and provider hints.
NODE_LABELS = (
    "agentpool",
    "kubernetes.azure.com/agentpool",
    "kubernetes.azure.com/cluster",
    "kubernetes.azure.com/mode",
    "eks.amazonaws.com/nodegroup",
    "eks.amazonaws.com/compute-type",
    "alpha.eksctl.io/nodegroup-name",
    "karpenter.sh/nodepool",
    "cloud.google.com/gke-nodepool",
    "cloud.google.com/gke-os-distribution",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "node-role.kubernetes.io/control-plane",
    "addon.gke.io/node-local-dns-ds-ready",  # GKE marks nodes where its NodeLocal DNSCache runs
)

# kube-system DaemonSets naming an NFQUEUE-based policy agent (facts §1.2, rule K6).
NODELOCAL_CONFIGMAPS = ("node-local-dns", "nodelocaldns")
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
# The big lists are asked for in protobuf first (collect/proto.py: ~3x less API server CPU and a
# quarter of the client's decoding); a server or proxy that does not speak it answers in JSON.
PROTOBUF = "application/vnd.kubernetes.protobuf,application/json"
METADATA_ONLY_PROTOBUF = (
    "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1," + METADATA_ONLY
)
PAGE_LIMIT = 500
_SHARED_POD_FIELDS = ("namespace", "node", "owner_kind", "owner_name", "phase", "dns_policy")
MAX_LIST_RESTARTS = 3

# Retries of one GET (the collector only reads, so every request is safe to repeat): 429 and 5xx answers
# and refused/reset connections are tried again after an exponential backoff with jitter, never sooner
# than the server's Retry-After, at most MAX_RETRIES times and for at most ``retry_budget`` seconds of
# waiting (default twice the request timeout). Timeouts and TLS errors are not retried: they would only
# multiply the wait.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRIES = 6
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 4.0


class ConfigError(ValueError):
    """Kubeconfig or argument problem that stops the whole scan. ``str(err)`` is one line."""


class ClusterFailed(Exception):
    """Stop reading this cluster; ``reason`` is the plain one-line explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResourceError(Exception):
    """An HTTP error status on one request (403, 404, 410, 5xx...)."""

    def __init__(
        self, status: int, reason: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body or b""
        self.headers = headers or {}
        self.note = ""  # e.g. "gave up after 4 attempts", appended to message()

    def message(self) -> str:
        text = self.reason or f"HTTP {self.status}"
        if proto.is_protobuf(self.body):  # the Status of a request that asked for protobuf
            text = proto.status_message(self.body) or text
        else:
            text = self._json_message(text)
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


def _retry_after(headers: dict[str, str]) -> float | None:
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


# --------------------------------------------------------------------------------------------------
# Kubeconfig
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One cluster to scan: a kubeconfig context (``config_file`` + ``context``) or in-cluster config."""

    name: str
    config_file: str | None
    context: str | None


def kubeconfig_paths(kubeconfig: str | Path | list[str | Path] | None = None) -> list[Path]:
    """The kubeconfig files to merge, like kubectl: the argument, else ``$KUBECONFIG``, else ~/.kube/config.

    A string may hold several paths separated by ``os.pathsep``. Missing files are skipped when they
    come from ``$KUBECONFIG`` (kubectl does the same); an explicitly named missing file is an error.
    """
    explicit = kubeconfig is not None
    if kubeconfig is None:
        env = os.environ.get("KUBECONFIG", "")
        raw: list[str] = [p for p in env.split(os.pathsep) if p] or ["~/.kube/config"]
    elif isinstance(kubeconfig, list | tuple):
        raw = [str(p) for p in kubeconfig]
    else:
        raw = [p for p in str(kubeconfig).split(os.pathsep) if p]
    paths: list[Path] = []
    for p in raw:
        path = Path(p).expanduser()
        if path.is_file():
            if path not in paths:
                paths.append(path)
        elif explicit:
            raise ConfigError(f"kubeconfig file not found: {path}")
    return paths


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"kubeconfig {path} is not valid YAML{where}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path} is not a kubeconfig (top level is not a mapping)")
    return doc


def list_contexts(paths: list[Path]) -> tuple[list[str], str | None]:
    """Context names across the merged files (first definition wins) and the current context."""
    names: list[str] = []
    current: str | None = None
    for path in paths:
        doc = _read_kubeconfig(path)
        for ctx in doc.get("contexts") or []:
            if isinstance(ctx, dict) and isinstance(ctx.get("name"), str) and ctx["name"] not in names:
                names.append(ctx["name"])
        cur = doc.get("current-context")
        if current is None and isinstance(cur, str) and cur:
            current = cur
    return names, current


def resolve_targets(
    kubeconfig: str | Path | list[str | Path] | None = None,
    contexts: list[str] | None = None,
    all_contexts: bool = False,
) -> list[Target]:
    """Which clusters to scan. Raises ConfigError (one line) when nothing usable is configured."""
    paths = kubeconfig_paths(kubeconfig)
    if not paths:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not contexts:
            return [Target(os.environ.get("DNSFLEET_CLUSTER_NAME") or IN_CLUSTER, None, None)]
        raise ConfigError("no kubeconfig found (set --kubeconfig or KUBECONFIG, or run inside a cluster)")
    names, current = list_contexts(paths)
    if not names:
        raise ConfigError(f"no contexts in kubeconfig {os.pathsep.join(map(str, paths))}")
    if contexts and all_contexts:
        raise ConfigError("give either contexts or all contexts, not both")
    if all_contexts:
        chosen = names
    elif contexts:
        unknown = [c for c in contexts if c not in names]
        if unknown:
            raise ConfigError(f"context {unknown[0]!r} not in kubeconfig (available: {', '.join(names)})")
        chosen = list(dict.fromkeys(contexts))
    else:
        if current is None:
            raise ConfigError("kubeconfig has no current-context; name contexts or use all contexts")
        if current not in names:
            raise ConfigError(f"current-context {current!r} is not defined in the kubeconfig")
        chosen = [current]
    joined = os.pathsep.join(str(p) for p in paths)
    return [Target(c, joined, c) for c in chosen]


def new_api_client(target: Target, timeout: float) -> k8s_client.ApiClient:
    """A fresh ApiClient for this target. Raises ClusterFailed with a plain reason."""
    cfg = type.__call__(k8s_client.Configuration)
    cfg.retries = False  # urllib3 never retries on its own; Api does, within its budget
    execauth.install()
    execauth.clear_error()
    try:
        if target.config_file is None:
            k8s_config.load_incluster_config(client_configuration=cfg)
            return k8s_client.ApiClient(configuration=cfg)
        client = k8s_config.new_client_from_config(
            config_file=target.config_file,
            context=target.context,
            persist_config=False,
            client_configuration=cfg,
        )
    except ConfigException as e:
        raise ClusterFailed(f"kubeconfig: {_one_line(str(e))}") from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ClusterFailed(f"kubeconfig: {type(e).__name__}: {_one_line(str(e))}") from None
    # The client swallows exec plugin failures (it logs them and goes on without credentials).
    if (err := execauth.take_error()) is not None:
        client.close()
        raise ClusterFailed(f"kubeconfig: {err}")
    return client


# --------------------------------------------------------------------------------------------------
# HTTP: raw JSON with timeouts and plain error reasons
# --------------------------------------------------------------------------------------------------


class Api:
    """Raw JSON GETs against one cluster, with a timeout on every request."""

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        timeout: float,
        *,
        max_retries: int = MAX_RETRIES,
        retry_budget: float | None = None,
    ) -> None:
        self.client = api_client
        self.timeout = timeout
        self.server = api_client.configuration.host
        self.max_retries = max_retries
        self.retry_budget = 2 * timeout if retry_budget is None else retry_budget
        self.retried = 0  # requests repeated so far (429, 5xx, refused): for tests and logs
        self.last_path = ""  # the path of the latest request (names what failed mid-scan)
        self._rng = random.Random()
        self._secrets = [
            v for v in (api_client.configuration.api_key or {}).values() if isinstance(v, str) and v
        ]

    def get(self, path: str, query: dict[str, Any] | None = None, accept: str = "application/json") -> Any:
        """GET ``path`` and return the parsed JSON. Raises ResourceError or ClusterFailed."""
        data = self.get_bytes(path, query, accept)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ClusterFailed(f"bad response from {self.server}{path}: not JSON") from None

    def get_bytes(
        self, path: str, query: dict[str, Any] | None = None, accept: str = "application/json"
    ) -> bytes:
        """GET with bounded retries (see RETRY_STATUSES): 429/5xx and refused connections are tried again
        after ``max(Retry-After, backoff)`` plus jitter while the retry budget lasts."""
        waited = 0.0
        attempt = 0
        while True:
            try:
                return self._get_once(path, query, accept)
            except ResourceError as e:
                if e.status not in RETRY_STATUSES:
                    raise
                after = _retry_after(e.headers)
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
                if not e.reason.startswith("unreachable:") or not (
                    "connection refused" in e.reason or "closed the connection" in e.reason
                ):
                    raise
                wait = self._wait(attempt, None)
                if attempt >= self.max_retries or waited + wait > self.retry_budget:
                    if attempt:
                        raise ClusterFailed(f"{e.reason} (gave up after {_attempts(attempt + 1)})") from None
                    raise
                why = e.reason
            attempt += 1
            self.retried += 1
            log.info("GET %s%s: %s; retry %d in %.2f s", self.server, path, why, attempt, wait)
            time.sleep(wait)
            waited += wait

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half fixed, half random), never below Retry-After."""
        backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2**attempt))
        wait = backoff / 2 + self._rng.uniform(0, backoff / 2)
        if retry_after is not None:
            wait = max(wait, retry_after + self._rng.uniform(0, min(1.0, retry_after) * 0.2))
        return wait

    def _get_once(self, path: str, query: dict[str, Any] | None, accept: str) -> bytes:
        self.last_path = path
        url_path = path + ("?" + urlencode(query) if query else "")
        method, url, headers, _body, _post = self.client.param_serialize(
            method="GET",
            resource_path=url_path,
            header_params={"Accept": accept},
            auth_settings=["BearerToken"],
        )
        try:
            rest = self.client.call_api(method, url, header_params=headers, _request_timeout=self.timeout)
            resp = rest.response
            try:
                data = resp.data
            finally:
                resp.release_conn()
        except ApiException as e:  # the REST layer wraps TLS errors as status 0
            raise ClusterFailed(self.scrub(_transport_reason(e, self.server, self.timeout))) from None
        except (urllib3.exceptions.HTTPError, OSError, ssl.SSLError) as e:
            raise ClusterFailed(self.scrub(_transport_reason(e, self.server, self.timeout))) from None
        if resp.status == 401:
            raise ClusterFailed(f"unauthorized: {self.server} rejected the credentials (401)")
        if not 200 <= resp.status <= 299:
            raise ResourceError(resp.status, resp.reason or "", data, dict(resp.headers or {}))
        return data

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            token = secret.split(" ", 1)[-1]
            if token:
                text = text.replace(token, "***")
        return text


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _transport_reason(e: BaseException, server: str, timeout: float) -> str:
    """Plain one-line reason for a connection-level failure."""
    chain: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        nxt = getattr(cur, "reason", None)
        cur = nxt if isinstance(nxt, BaseException) else (cur.__cause__ or cur.__context__)
    text = " ".join(_one_line(str(x)) for x in chain)
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


_FORBIDDEN_RE = re.compile(r'User "([^"]*)" cannot (\w+) resource "([^"]+)"')


def forbidden_reason(err: ResourceError, resource: str) -> str:
    m = _FORBIDDEN_RE.search(err.message())
    if m:
        user, verb, res = m.groups()
        return f'forbidden: user "{user}" cannot {verb} {res}'
    return f"forbidden: cannot read {resource}"


# --------------------------------------------------------------------------------------------------
# Paginated lists
# --------------------------------------------------------------------------------------------------


def list_pages(
    api: Api,
    path: str,
    query: dict[str, Any] | None = None,
    limit: int = PAGE_LIMIT,
    accept: str = "application/json",
    on_restart: Callable[[], None] | None = None,
    on_page: Callable[[int], None] | None = None,
    decode: Callable[[bytes], tuple[list[dict[str, Any]], str | None]] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Yield the ``items`` of each page of a list, following ``continue`` tokens.

    ``decode`` (e.g. ``typed.pods_page``) turns a page's bytes into (items, continue token) keeping only
    the fields the caller reads; by default the whole page is parsed.
    On 410 Gone (continue token expired, e.g. after etcd compaction) the list starts again from the
    first page; ``on_restart`` is called first so the caller drops what it kept (never double count).
    """
    restarts = 0
    token: str | None = None
    page = 0
    while True:
        q = dict(query or {})
        q["limit"] = limit
        if token:
            q["continue"] = token
        try:
            if decode is None:
                doc = api.get(path, q, accept)
            else:
                data = api.get_bytes(path, q, accept)
        except ResourceError as e:
            if e.status == 410 and token and restarts < MAX_LIST_RESTARTS:
                restarts += 1
                token = None
                page = 0
                if on_restart:
                    on_restart()
                continue
            raise
        if decode is None:
            items = doc.get("items") or []
            token = (doc.get("metadata") or {}).get("continue") or None
        else:
            try:
                items, token = decode(data)
            except typed.DecodeError:
                # One odd object must not cost the cluster: fall back to the generic parse, whose
                # projections read every field defensively (asking for the page again in JSON if it
                # came as protobuf).
                if proto.is_protobuf(data):
                    log.info(
                        "GET %s%s: protobuf page not decoded; reading it again as JSON", api.server, path
                    )
                    data = api.get_bytes(path, q, _json_only(accept))
                items, token = _generic_page(api, path, data)
        yield items
        page += 1
        if on_page:
            on_page(page)
        if not token:
            return


def _json_only(accept: str) -> str:
    """``accept`` without its protobuf choices."""
    return ",".join(a for a in accept.split(",") if "protobuf" not in a) or "application/json"


def _generic_page(api: Api, path: str, data: bytes) -> tuple[list[dict[str, Any]], str | None]:
    try:
        return typed.generic_page(data)
    except typed.ShapeError:
        raise ClusterFailed(
            f"bad response from {api.server}{path}: not a list of the expected shape"
        ) from None


def list_all(
    api: Api,
    path: str,
    project: Callable[[dict[str, Any]], Any],
    query: dict[str, Any] | None = None,
    limit: int = PAGE_LIMIT,
    accept: str = "application/json",
    on_page: Callable[[int], None] | None = None,
    on_restart: Callable[[], None] | None = None,
    decode: Callable[[bytes], tuple[list[dict[str, Any]], str | None]] | None = None,
) -> list[Any]:
    """All items of a paginated list, each passed through ``project`` (``None`` results dropped)."""
    out: list[Any] = []

    def restart() -> None:
        out.clear()
        if on_restart:
            on_restart()

    for items in list_pages(
        api, path, query, limit, accept, on_restart=restart, on_page=on_page, decode=decode
    ):
        for it in items:
            row = project(it)
            if row is not None:
                out.append(row)
    return out


# --------------------------------------------------------------------------------------------------
# Projections
# --------------------------------------------------------------------------------------------------


def _d(v: Any) -> dict[str, Any]:
    """``v`` when it is a mapping, else empty: API objects are read defensively (a proxy, an
    aggregated API or a broken server can send any JSON), never trusted to match the schema."""
    return v if isinstance(v, dict) else {}


def _ds(v: Any) -> list[dict[str, Any]]:
    """The mappings in ``v`` when it is a list, else nothing."""
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def project_node(obj: dict[str, Any]) -> dict[str, Any]:
    meta = _d(obj.get("metadata"))
    status = _d(obj.get("status"))
    info = _d(status.get("nodeInfo"))
    labels = _d(meta.get("labels"))
    ready: bool | None = None
    for cond in _ds(status.get("conditions")):
        if cond.get("type") == "Ready":
            ready = {"True": True, "False": False}.get(cond.get("status"))  # type: ignore[arg-type]
    return {
        "name": _s(meta.get("name")),
        "labels": {k: str(labels[k]) for k in NODE_LABELS if k in labels},
        "kernel_version": _s(info.get("kernelVersion")),
        "os_image": _s(info.get("osImage")),
        "container_runtime": _s(info.get("containerRuntimeVersion")),
        "kubelet_version": _s(info.get("kubeletVersion")),
        "ready": ready,
    }


def _controller_ref(meta: dict[str, Any]) -> dict[str, Any] | None:
    refs = _ds(meta.get("ownerReferences"))
    for ref in refs:
        if ref.get("controller"):
            return ref
    return refs[0] if refs else None


def _pod_ready(status: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in _ds(status.get("conditions")))


def project_pod(obj: dict[str, Any]) -> dict[str, Any]:
    meta = _d(obj.get("metadata"))
    spec = _d(obj.get("spec"))
    ref = _controller_ref(meta)
    dns_config: Any = spec.get("dnsConfig")
    if isinstance(dns_config, dict):
        names = dns_config.get("nameservers")
        searches = dns_config.get("searches")
        dns_config = {
            "nameservers": [str(x) for x in names] if isinstance(names, list) else [],
            "searches": [str(x) for x in searches] if isinstance(searches, list) else [],
            "options": [
                {"name": o.get("name"), "value": o.get("value")} for o in _ds(dns_config.get("options"))
            ],
        }
    else:
        dns_config = None
    return {
        "namespace": _s(meta.get("namespace")),
        "name": _s(meta.get("name")),
        "node": _s(spec.get("nodeName")),
        "owner_kind": _s(ref.get("kind")) if ref else None,
        "owner_name": _s(ref.get("name")) if ref else None,
        "phase": _s(_d(obj.get("status")).get("phase")),
        "host_network": spec.get("hostNetwork") is True,
        "dns_policy": _s(spec.get("dnsPolicy")),
        "dns_config": dns_config,
        "images": [c["image"] for c in _ds(spec.get("containers")) if _s(c.get("image"))],
        "resolver_annotation": _s(_d(meta.get("annotations")).get(RESOLVER_ANNOTATION)),
    }


_VERSION_RE = re.compile(r"v?(\d+\.\d+\.\d+)")


def image_version(image: str | None) -> str | None:
    """'registry.k8s.io/coredns/coredns:v1.11.1' -> '1.11.1'; EKS '-eksbuild.4' and AKS hotfix suffixes ok."""
    if not image:
        return None
    ref = image.split("@", 1)[0]
    tail = ref.rsplit("/", 1)[-1]
    if ":" not in tail:
        return None
    m = _VERSION_RE.match(tail.split(":", 1)[1])
    return m.group(1) if m else None


def kube_proxy_mode_from_config(text: str | None) -> str | None:
    """Mode from a KubeProxyConfiguration document; an empty mode means iptables (facts §6)."""
    if text is None:
        return None
    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError):  # hostile nesting, odd scalars: unknown
        return None
    if not isinstance(doc, dict):
        return None
    mode = doc.get("mode")
    if mode is None or (isinstance(mode, str) and not mode.strip()):
        return "iptables"
    mode = str(mode).strip().lower()
    return mode if mode in ("iptables", "ipvs", "nftables") else None


def provider_hint(nodes: list[dict[str, Any]] | None, server_version: str | None) -> str | None:
    labels: set[str] = set()
    for n in nodes or []:
        labels.update((n.get("labels") or {}).keys())
    sv = server_version or ""
    if any(k.startswith("eks.amazonaws.com/") for k in labels) or "-eks-" in sv:
        return "eks"
    if "cloud.google.com/gke-nodepool" in labels or "-gke." in sv:
        return "gke"
    if any(k.startswith("kubernetes.azure.com/") for k in labels) or "agentpool" in labels:
        return "aks"
    return None


# --------------------------------------------------------------------------------------------------
# One cluster
# --------------------------------------------------------------------------------------------------


@dataclass
class ClusterScan:
    """Reads one cluster. ``result()`` is the snapshot cluster dict; ``coredns_pods`` feeds the scrape."""

    name: str
    api: Api
    progress: Progress | None = None
    page_limit: int = PAGE_LIMIT
    protobuf: bool = True  # ask for the big lists in protobuf (JSON when False, or when not offered)
    missing: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    coredns_pods: list[dict[str, Any]] = field(default_factory=list)
    node_addresses: dict[str, str] = field(default_factory=dict)
    _ds_pod_ready_nodes: dict[str, set[str]] = field(default_factory=dict)
    _kube_proxy_static: bool = False

    def _accept(self) -> str:
        return PROTOBUF if self.protobuf else "application/json"

    def _done(self, resource: str, detail: str = "") -> None:
        if self.progress:
            self.progress("resource_done", self.name, f"{resource} {detail}".strip())

    def _forbidden(self, resource: str, err: ResourceError) -> None:
        if resource not in self.missing:
            self.missing.append(resource)
        if err.status == 403:
            self.errors[resource] = forbidden_reason(err, resource)
        else:
            self.errors[resource] = f"{resource}: HTTP {err.status} {_one_line(err.message())[:200]}"

    def _get_optional(self, resource: str, path: str, query: dict[str, Any] | None = None) -> Any:
        """GET one object; 404 -> None (absent); other errors mark ``resource`` missing."""
        try:
            return self.api.get(path, query)
        except ResourceError as e:
            if e.status == 404:
                return None
            self._forbidden(resource, e)
            raise

    def run(self) -> dict[str, Any]:
        out = base_cluster(self.name)
        out["collected_at"] = now_iso()
        version = self.api.get("/version")
        out["server_version"] = version.get("gitVersion") if isinstance(version, dict) else None
        self._done("version", out["server_version"] or "")
        try:
            return self._read(out)
        except ClusterFailed as e:  # the server answered /version, then went away (or etcd did)
            if e.reason.startswith(("unreachable:", "timed out", "TLS error", "bad response")):
                raise ClusterFailed(f"{e.reason} while reading {self.api.last_path}") from None
            raise

    def _read(self, out: dict[str, Any]) -> dict[str, Any]:
        nodes = self._nodes()
        pods = self._pods()
        if nodes is None and pods is None:
            raise ClusterFailed(self.errors.get("nodes") or self.errors.get("pods") or "forbidden")
        out["nodes"], out["pods"] = nodes, pods
        out["owners"] = {"ReplicaSet": self._owners("replicasets", "/apis/apps/v1/replicasets", "Deployment")}
        out["owners"]["Job"] = self._owners("jobs", "/apis/batch/v1/jobs", "CronJob")
        out["dns"] = self._dns(pods)
        out["provider"] = provider_hint(nodes, out["server_version"])
        out["missing"] = list(self.missing)
        if self.missing:
            out["status"] = "partial"
            out["reason"] = "could not read " + "; ".join(self.errors[m] for m in self.missing)
        else:
            out["status"] = "ok"
        return out

    # -- workloads ---------------------------------------------------------------------------------

    def _nodes(self) -> list[dict[str, Any]] | None:
        def project(obj: dict[str, Any]) -> dict[str, Any]:
            row = project_node(obj)
            for addr in (obj.get("status") or {}).get("addresses") or []:
                if addr.get("type") == "InternalIP" and addr.get("address"):
                    self.node_addresses[addr["address"]] = row["name"]
            return row

        try:
            nodes = list_all(
                self.api,
                "/api/v1/nodes",
                project,
                limit=self.page_limit,
                accept=self._accept(),
                decode=typed.nodes_page,
            )
        except ResourceError as e:
            self._forbidden("nodes", e)
            return None
        self._done("nodes", f"({len(nodes)})")
        return nodes

    def _pods(self) -> list[dict[str, Any]] | None:
        def reset() -> None:
            self.coredns_pods.clear()
            self._ds_pod_ready_nodes.clear()
            self._kube_proxy_static = False

        # Pods repeat the same few strings (namespace, node, owner, phase, images): keep one copy each.
        strings: dict[str, str] = {}
        same = strings.setdefault

        def project(obj: dict[str, Any]) -> dict[str, Any]:
            if type(obj) is proto.PodRow:  # decoded from protobuf straight into its row, strings shared
                row, system = dict(obj), obj.system
            else:
                row, system = project_pod(obj), obj
                for k in _SHARED_POD_FIELDS:
                    if (v := row[k]) is not None:
                        row[k] = same(v, v)
                row["images"] = [same(x, x) for x in row["images"]]
            if row["namespace"] == KUBE_SYSTEM and system is not None:
                self._note_system_pod(system, row)
            return row

        pods: list[dict[str, Any]] = []
        try:
            for items in list_pages(
                self.api,
                "/api/v1/pods",
                limit=self.page_limit,
                accept=self._accept(),
                on_restart=lambda: (pods.clear(), reset()),
                decode=lambda data: typed.pods_page(data, strings),
            ):
                pods.extend(project(it) for it in items)
        except ResourceError as e:
            reset()
            self._forbidden("pods", e)
            return None
        self._done("pods", f"({len(pods)})")
        return pods

    def _note_system_pod(self, obj: dict[str, Any], row: dict[str, Any]) -> None:
        meta = _d(obj.get("metadata"))
        status = _d(obj.get("status"))
        labels = _d(meta.get("labels"))
        ready = row["phase"] == "Running" and _pod_ready(status)
        if labels.get("k8s-app") == "kube-dns":
            self.coredns_pods.append({"name": row["name"], "ready": ready, "node": row["node"]})
        if row["owner_kind"] == "DaemonSet" and row["owner_name"]:
            nodes = self._ds_pod_ready_nodes.setdefault(row["owner_name"], set())
            if ready and row["node"]:
                nodes.add(row["node"])
        if (row["name"] or "").startswith("kube-proxy") and row["owner_kind"] in (None, "Node"):
            self._kube_proxy_static = True

    def _owners(self, resource: str, path: str, wanted_kind: str) -> dict[str, list[str]] | None:
        def project(obj: dict[str, Any]) -> tuple[str, list[str]] | None:
            meta = _d(obj.get("metadata"))
            ref = _controller_ref(meta)
            if not ref or ref.get("kind") != wanted_kind:
                return None
            return f"{meta.get('namespace')}/{meta.get('name')}", [wanted_kind, ref.get("name")]

        try:
            rows = list_all(
                self.api,
                path,
                project,
                limit=self.page_limit,
                accept=METADATA_ONLY_PROTOBUF if self.protobuf else METADATA_ONLY,
                decode=typed.metadata_page,
            )
        except ResourceError as e:
            self._forbidden(resource, e)
            return None
        self._done(resource, f"({len(rows)})")
        return dict(rows)

    # -- DNS service path --------------------------------------------------------------------------

    def _dns(self, pods: list[dict[str, Any]] | None) -> dict[str, Any]:
        dns: dict[str, Any] = {
            "service_ip": None,
            "ready_endpoints": None,
            "coredns_version": None,
            "coredns_replicas": None,
            "corefile": None,
            "kube_proxy_mode": None,
            "kube_proxy_present": None,
            "service_ip_families": None,
            "daemonsets": None,
            "daemonset_facts": None,
            "configmap_facts": None,
            "cilium_config": None,
            "calico_bpf": None,
        }
        ks = f"/api/v1/namespaces/{KUBE_SYSTEM}"
        svc_name = "kube-dns"
        try:
            svc = self._get_optional("services", f"{ks}/services/kube-dns")
            if svc is None:
                found = self.api.get(f"{ks}/services", {"labelSelector": "k8s-app=kube-dns"})
                items = found.get("items") or []
                svc = items[0] if items else None
            if svc is not None:
                svc_name = (svc.get("metadata") or {}).get("name") or svc_name
                ip = (svc.get("spec") or {}).get("clusterIP")
                dns["service_ip"] = ip if ip and ip != "None" else None
                fams = (svc.get("spec") or {}).get("ipFamilies")
                dns["service_ip_families"] = (
                    [str(f) for f in fams] if isinstance(fams, list) and fams else None
                )
            self._done("services")
        except ResourceError as e:
            self._forbidden("services", e)

        try:
            slices = self.api.get(
                f"/apis/discovery.k8s.io/v1/namespaces/{KUBE_SYSTEM}/endpointslices",
                {"labelSelector": f"kubernetes.io/service-name={svc_name}"},
            )
            dns["ready_endpoints"] = count_ready_endpoints(slices.get("items") or [])
            self._done("endpointslices", f"({dns['ready_endpoints']} ready)")
        except ResourceError as e:
            self._forbidden("endpointslices", e)

        apps = f"/apis/apps/v1/namespaces/{KUBE_SYSTEM}"
        try:
            dep = self._get_optional("deployments", f"{apps}/deployments/coredns")
            if dep is None:
                found = self.api.get(f"{apps}/deployments", {"labelSelector": "k8s-app=kube-dns"})
                items = found.get("items") or []
                dep = items[0] if items else None
            if dep is not None:
                spec = dep.get("spec") or {}
                dns["coredns_replicas"] = spec.get("replicas")
                containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
                main = next((c for c in containers if "coredns" in (c.get("image") or "")), None)
                main = main or (containers[0] if containers else {})
                dns["coredns_version"] = image_version(main.get("image"))
            self._done("deployments")
        except ResourceError as e:
            self._forbidden("deployments", e)

        daemonsets: list[dict[str, Any]] | None
        try:
            daemonsets = list_all(
                self.api, f"{apps}/daemonsets", dnsfacts.project_daemonset, limit=self.page_limit
            )
            daemonsets = [d for d in daemonsets if d["name"]]
            dns["daemonsets"] = sorted(d["name"] for d in daemonsets)
            for d in daemonsets:  # nodes with a ready pod of each DaemonSet (None: pods unreadable)
                d["ready_nodes"] = (
                    sorted(self._ds_pod_ready_nodes.get(d["name"], set())) if pods is not None else None
                )
            dns["daemonset_facts"] = sorted(daemonsets, key=lambda d: d["name"])
            self._done("daemonsets", f"({len(daemonsets)})")
        except ResourceError as e:
            self._forbidden("daemonsets", e)
            daemonsets = None
        names = set(dns["daemonsets"] or [])

        configmaps: dict[str, dict[str, Any] | None] = {}
        cm_ok = True
        mounted = [c for d in daemonsets or [] for c in d["configmaps"]]
        wanted = (
            "coredns",
            "kube-proxy",
            "kube-proxy-config",
            "cilium-config",
            *NODELOCAL_CONFIGMAPS,
            *mounted,
        )
        for cm in dict.fromkeys(wanted):
            try:
                doc = self._get_optional("configmaps", f"{ks}/configmaps/{cm}")
            except ResourceError:
                cm_ok = False
                break
            configmaps[cm] = (doc or {}).get("data") if doc is not None else None
        if cm_ok:
            self._done("configmaps")
            core = configmaps.get("coredns")
            dns["corefile"] = core.get("Corefile") if core else None
            dns["configmap_facts"] = {
                name: dnsfacts.configmap_fact(data) for name, data in configmaps.items() if data is not None
            }
            cilium = configmaps.get("cilium-config")
            if cilium is not None:
                dns["cilium_config"] = {
                    k: cilium.get(k)
                    for k in ("kube-proxy-replacement", "bpf-lb-sock", "bpf-lb-sock-hostns-only")
                }

        # kube-proxy: DaemonSet or static pods; mode from config.conf (kubeadm) or kube-proxy-config (EKS).
        if daemonsets is not None:
            dns["kube_proxy_present"] = "kube-proxy" in names or self._kube_proxy_static
        elif self._kube_proxy_static:
            dns["kube_proxy_present"] = True
        if cm_ok:
            mode = None
            kp = configmaps.get("kube-proxy")
            if kp is not None:
                mode = kube_proxy_mode_from_config(kp.get("config.conf"))
            kpc = configmaps.get("kube-proxy-config")
            if mode is None and kpc is not None:
                text = kpc.get("config") or next((v for v in kpc.values() if "mode" in (v or "")), None)
                mode = kube_proxy_mode_from_config(text)
            if mode is None and kp is None and kpc is None and dns["kube_proxy_present"] is False:
                mode = "none"
            dns["kube_proxy_mode"] = mode

        if daemonsets is not None and "calico-node" in names:
            dns["calico_bpf"] = self._calico_bpf()
        return dns

    def _calico_bpf(self) -> bool | None:
        """Calico eBPF dataplane on? FelixConfiguration ``default`` or the operator's Installation."""
        checks = (
            ("/apis/crd.projectcalico.org/v1/felixconfigurations/default", ("spec", "bpfEnabled"), True),
            (
                "/apis/operator.tigera.io/v1/installations/default",
                ("spec", "calicoNetwork", "linuxDataplane"),
                "BPF",
            ),
        )
        seen_any = False
        for path, keys, on in checks:
            try:
                doc = self.api.get(path)
            except ResourceError as e:
                if e.status == 404:
                    continue
                return None
            seen_any = True
            val: Any = doc
            for k in keys:
                val = val.get(k) if isinstance(val, dict) else None
            if val == on:
                return True
        return False if seen_any else None


def count_ready_endpoints(slices: list[dict[str, Any]]) -> int:
    """Ready kube-dns endpoints over all EndpointSlices (ready unset counts as ready, per the API).

    Dual-stack services have one slice family per address type; the larger family is the count.
    """
    per_family: dict[str, set[str]] = {}
    for sl in _ds(slices):
        fam = per_family.setdefault(str(sl.get("addressType") or "IPv4"), set())
        for ep in _ds(sl.get("endpoints")):
            if _d(ep.get("conditions")).get("ready") is False:
                continue
            ref = _d(ep.get("targetRef"))
            addrs = ep.get("addresses")
            key = (
                ref.get("uid")
                or ref.get("name")
                or (",".join(map(str, addrs)) if isinstance(addrs, list) else "")
            )
            if key:
                fam.add(str(key))
    return max((len(s) for s in per_family.values()), default=0)


def base_cluster(name: str) -> dict[str, Any]:
    """A cluster dict with every part unknown."""
    return {
        "name": name,
        "status": "failed",
        "reason": None,
        "missing": [],
        "server_version": None,
        "collected_at": None,
        "provider": None,
        "nodes": None,
        "pods": None,
        "owners": {"ReplicaSet": None, "Job": None},
        "dns": None,
        "metrics": {
            "source": None,
            "window_s": None,
            "note": None,
            "coredns": None,
            "coredns_series": None,
            "conntrack": None,
        },
    }


def failed_cluster(name: str, reason: str) -> dict[str, Any]:
    out = base_cluster(name)
    out["collected_at"] = now_iso()
    out["reason"] = reason
    out["metrics"]["note"] = "not collected: the cluster could not be read"
    return out


def proxy_path(namespace: str, pod: str, port: int, path: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}:{port}/proxy/{path.lstrip('/')}"
