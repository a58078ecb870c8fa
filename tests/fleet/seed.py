"""Seed a running apiserver with a cluster spec through raw REST calls (keep-alive pool, thread pool).

Model objects one by one would take minutes for 1,000+ pods; raw JSON over a pooled HTTPS connection
takes seconds. Errors name the request and carry the apiserver's one-line message, never the token.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import urllib3

from tests.fleet import objects as O
from tests.fleet import spec as S

RETRY_STATUS = (429, 500, 502, 503, 504)


class FleetError(RuntimeError):
    """The fleet could not be started or seeded. ``str(err)`` is one line naming what failed."""


class Rest:
    """A tiny JSON client for one apiserver (one pooled HTTPS connection per worker thread)."""

    def __init__(self, server: str, ca: Path, token: str, workers: int = 8) -> None:
        host, port = server.removeprefix("https://").rsplit(":", 1)
        self.server = server
        self._token = token
        self.pool = urllib3.HTTPSConnectionPool(
            host,
            int(port),
            maxsize=workers,
            block=True,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(ca),
            timeout=urllib3.Timeout(connect=5, read=60),
            retries=False,
        )

    def __repr__(self) -> str:  # never show the token
        return f"Rest({self.server})"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        ok: Iterable[int] = (200, 201),
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = content_type
        ok = tuple(ok)
        delay = 0.2
        for attempt in range(6):
            try:
                r = self.pool.urlopen(method, path, body=data, headers=headers)
            except (urllib3.exceptions.HTTPError, OSError) as e:
                if attempt == 5:
                    raise FleetError(f"{method} {self.server}{path}: {type(e).__name__}: {e}") from None
            else:
                if r.status in ok:
                    return r.status, orjson.loads(r.data) if r.data else None
                if r.status not in RETRY_STATUS or attempt == 5:
                    raise FleetError(f"{method} {self.server}{path}: HTTP {r.status}: {_message(r.data)}")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.pool.close()


def _message(data: bytes) -> str:
    try:
        return str(orjson.loads(data).get("message", ""))[:300]
    except (orjson.JSONDecodeError, AttributeError):
        return data[:200].decode("utf-8", "replace").replace("\n", " ")


def seed(
    rest: Rest, spec: S.ClusterSpec, workers: int = 8, waves: list[list[O.Item]] | None = None
) -> dict[str, int]:
    """Create every object of ``spec``: waves in order, the items of a wave in parallel.

    ``waves`` (default ``objects.build(spec)``) lets a caller seed adjusted objects, e.g. the bench
    fleet's full-size pods. Returns the number of objects created per kind."""
    waves = O.build(spec) if waves is None else waves
    uids: dict[tuple[str, str, str], str] = {}
    counts: dict[str, int] = {}

    def create(item: O.Item) -> tuple[tuple[str, str, str], str]:
        body = item.body
        if item.owner is not None:
            kind, ns, name = item.owner
            uid = uids.get((kind, ns, name))
            if uid is None:
                raise FleetError(
                    f"{spec.name}: {item.kind} {item.name}: owner {kind} {ns}/{name} was not created"
                )
            body = {
                **body,
                "metadata": {**body["metadata"], "ownerReferences": [_owner_ref(kind, name, uid)]},
            }
        _, created = rest.request("POST", item.collection_path(), body)
        if item.status is not None:
            rest.request(
                "PATCH",
                item.path() + "/status",
                {"status": item.status},
                content_type="application/merge-patch+json",
                ok=(200,),
            )
        return (item.kind, item.namespace, item.name), created["metadata"]["uid"]

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"seed-{spec.name}") as ex:
        for wave in waves:
            for key, uid in ex.map(create, wave):
                uids[key] = uid
                counts[key[0]] = counts.get(key[0], 0) + 1
    return counts


def _owner_ref(kind: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": O.API_VERSION[kind],
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": kind != "Node",
        "blockOwnerDeletion": kind != "Node",
    }
