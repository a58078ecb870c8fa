"""Where store objects live: one URL scheme for a local directory and S3-compatible storage.

Both go through ``obstore`` (Rust ``object_store``): the same calls, the same errors, the same
create-only writes (``mode="create"``: ``If-None-Match: *`` on S3, an atomic no-replace link on a
local disk), which is what lets concurrent collectors share an index without a lock.

URLs::

    /var/lib/dnsfleet/store            a local directory (also file:///var/lib/dnsfleet/store)
    s3://BUCKET[/PREFIX][?endpoint=http://127.0.0.1:7070&region=us-east-1&timeout=10]

Credentials for S3 come from the environment only (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, or a web-identity token as ``object_store`` reads it); a URL carrying a user or
password is refused, so a URL can be printed, logged and put in a CronJob without leaking a secret.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_TIMEOUT_S = 10.0
QUERY_KEYS = ("endpoint", "region", "timeout", "retries")


def default_store_dir() -> Path:
    """The embedded default: ``store`` in the state directory (``jsonl.state_dir``: ``DNSFLEET_STATE_DIR``,
    else ``$XDG_STATE_HOME/dnsfleet``, else ``~/.local/state/dnsfleet``)."""
    from dnsfleet.jsonl import state_dir

    return state_dir() / "store"


class StoreError(Exception):
    """A store that cannot be used or an operation that failed; ``str(err)`` is one line."""


class ObjectExists(StoreError):
    """A create-only write met an existing object."""


class ObjectMissing(StoreError):
    """The object is not (or no longer) there."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime


class Backend:
    """A bucket prefix or a directory, addressed by ``/``-separated keys."""

    def __init__(self, url: str | None = None, *, timeout: float | None = None) -> None:
        self.url, self._store, self.kind = _open(url, timeout)

    def __repr__(self) -> str:
        return f"Backend({self.url!r})"

    def put(self, key: str, data: bytes, *, create: bool = False) -> None:
        """Write ``data`` at ``key``; ``create``: fail with ``ObjectExists`` if something is there."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            obstore.put(self._store, key, data, mode="create" if create else "overwrite", use_multipart=False)
        except (AlreadyExistsError, PreconditionError):
            raise ObjectExists(f"{key} already exists in {self.url}") from None
        except Exception as e:
            raise StoreError(f"cannot write {key} to {self.url}: {_one_line(e)}") from None

    def get(self, key: str) -> bytes:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            return bytes(obstore.get(self._store, key).bytes())
        except (NotFoundError, FileNotFoundError):  # obstore raises the latter for a missing key
            raise ObjectMissing(f"{key} is not in {self.url}") from None
        except Exception as e:
            raise StoreError(f"cannot read {key} from {self.url}: {_one_line(e)}") from None

    def delete(self, key: str) -> None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            obstore.delete(self._store, key)
        except (NotFoundError, FileNotFoundError):
            return
        except Exception as e:
            # AWS answers 204 for a missing key; some gateways (versitygw) answer 404 NoSuchKey, which
            # object_store reports as a generic error. Gone is what a delete wants either way.
            if "NoSuchKey" in str(e):
                return
            raise StoreError(f"cannot delete {key} in {self.url}: {_one_line(e)}") from None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (a ``/``-terminated folder), in no particular order."""
        import obstore

        try:
            for batch in obstore.list(self._store, prefix, chunk_size=1000):
                for m in batch:
                    yield ObjectInfo(m["path"], int(m["size"]), m["last_modified"])
        except FileNotFoundError:  # a local store whose folder was never written
            return
        except Exception as e:
            raise StoreError(f"cannot list {prefix} in {self.url}: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    # object_store's messages nest the whole request chain; the first clause names the failure.
    return (text[:240] + "…") if len(text) > 240 else (text or type(e).__name__)


def _open(url: str | None, timeout: float | None) -> tuple[str, Any, str]:
    if not url:
        url = str(default_store_dir())
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and url[1:3] == ":\\"):
        return _open_local(parts.path if scheme == "file" else url)
    if scheme == "s3":
        return _open_s3(url, timeout)
    raise StoreError(
        f"unsupported store URL scheme {parts.scheme!r}: use a directory, file:///DIR or s3://BUCKET"
    )


def _open_local(path: str) -> tuple[str, Any, str]:
    from obstore.store import LocalStore

    p = Path(path).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create store directory {p}: {e.strerror}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise StoreError(f"store directory {p} is not writable")
    return str(p.resolve()), LocalStore(p.resolve()), "local"


def _open_s3(url: str, timeout: float | None) -> tuple[str, Any, str]:
    from obstore.store import S3Store

    parts = urlsplit(url)
    if parts.username or parts.password:
        raise StoreError(
            "the store URL must not carry credentials: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY instead"
        )
    bucket = parts.hostname or ""
    if not bucket:
        raise StoreError(f"store URL {url!r} names no bucket (s3://BUCKET/PREFIX)")
    q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(q) - set(QUERY_KEYS))
    if unknown:
        raise StoreError(f"unknown store URL option(s) {', '.join(unknown)} (known: {', '.join(QUERY_KEYS)})")
    try:
        t = float(q["timeout"]) if "timeout" in q else (timeout or DEFAULT_TIMEOUT_S)
        retries = int(q.get("retries", "2"))
    except ValueError:
        raise StoreError("store URL options timeout and retries must be numbers") from None
    if t <= 0 or retries < 0:
        raise StoreError("store URL option timeout must be positive and retries not negative")
    prefix = parts.path.strip("/") or None
    kwargs: dict[str, Any] = {"region": q.get("region") or os.environ.get("AWS_REGION") or "us-east-1"}
    endpoint = q.get("endpoint")
    if endpoint:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.hostname or ep.username or ep.password:
            raise StoreError(f"store endpoint {endpoint!r} must be an http(s) URL without credentials")
        kwargs["endpoint"] = endpoint
        kwargs["virtual_hosted_style_request"] = False
    client = {"timeout": timedelta(seconds=t), "connect_timeout": timedelta(seconds=min(t, 5.0))}
    if endpoint and endpoint.startswith("http://"):
        client["allow_http"] = True
    retry = {
        "max_retries": retries,
        "retry_timeout": timedelta(seconds=t * (retries + 1)),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
            "base": 2,
        },
    }
    try:
        store = S3Store(bucket, prefix=prefix, client_options=client, retry_config=retry, **kwargs)
    except Exception as e:
        raise StoreError(f"cannot open store {url}: {_one_line(e)}") from None
    shown = f"s3://{bucket}" + (f"/{prefix}" if prefix else "") + (f" at {endpoint}" if endpoint else "")
    return shown, store, "s3"
