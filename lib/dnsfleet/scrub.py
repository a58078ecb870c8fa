"""The one scrubber: every reason, note and error text dnsfleet shows or writes passes through ``scrub``.

It knows, for this process:

- every credential value of every kubeconfig read (``remember_kubeconfig``, called when a file is
  read): ``token``, the contents of ``tokenFile``, ``password`` (and the ``user:password`` Basic
  form), ``client-key-data`` (base64, decoded, and each line of the decoded key), the contents of a
  ``client-key`` file, and the auth-provider tokens and client secret;
- the tokens and client keys exec credential plugins printed (``remember``, from ``execauth``);
- the Prometheus token and password (``remember``, from ``collect.prom``).

On top of the known values it blanks, whatever their value: the value after ``Authorization:`` (or
``"authorization": "..."``), ``Bearer``/``Basic`` credentials, and the ``user:password@`` part of
URLs. Values shorter than ``MIN_SECRET_LEN`` characters are not blanked by value (a 3-letter password
would blank every "dev" in a cluster name); they are still blanked in the three forms above.

Scrubbing more than needed is harmless; the registry is process-wide and only grows.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

MIN_SECRET_LEN = 8
MAX_SECRET_FILE = 64 * 1024  # a token or key file larger than this is not read to learn its value
MASK = "***"

_lock = threading.Lock()
_known: set[str] = set()
_pattern: re.Pattern[str] | None = None

_AUTH_HEADER = re.compile(
    r"""(?ix)
    \b((?:proxy-)?authorization\b["']?\s*[:=]\s*\[?\s*["']?)   # Authorization: / "authorization": "
    (?:(?:bearer|basic|token|negotiate|digest)\s+)?             # the scheme goes too
    [^\s"',;}\]]+
    """
)
# A Bearer/Basic credential: 8+ token characters, at least one of them not a letter (so "basic
# authentication" in a sentence stays as it is).
_SCHEME_TOKEN = re.compile(r"(?i)\b(bearer|basic)\s+(?=[\w.~+/=-]*[\d._~+/=-])[\w.~+/=-]{8,}")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]+@")


def remember(*values: str | bytes | None) -> None:
    """Add credential values to the scrubber (whitespace around them does not count)."""
    new: set[str] = set()
    for v in values:
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if not isinstance(v, str):
            continue
        for form in _forms(v):
            if len(form) >= MIN_SECRET_LEN and form not in _known:
                new.add(form)
    if not new:
        return
    global _pattern
    with _lock:
        _known.update(new)
        alts = sorted(_known, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(a) for a in alts))


def _forms(value: str) -> Iterable[str]:
    """The value, trimmed, and each non-blank line of a multi-line value (a PEM key's lines)."""
    v = value.strip()
    yield v
    if "\n" in v:
        for line in v.splitlines():
            line = line.strip()
            if line and not line.startswith("-----"):
                yield line


def known_count() -> int:
    """How many values the scrubber knows (for tests and logs; never the values)."""
    return len(_known)


def scrub(text: Any) -> Any:
    """``text`` with every known credential and every Authorization/Bearer/Basic/URL credential
    replaced by ``***``. Anything that is not a string comes back unchanged."""
    if not isinstance(text, str) or not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + MASK, text)
    text = _SCHEME_TOKEN.sub(lambda m: m.group(1) + " " + MASK, text)
    return _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)


def scrub_paths(doc: dict[str, Any], paths: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Scrub, in place, the string found at each key path of ``doc`` (missing paths are skipped)."""
    for path in paths:
        node: Any = doc
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(path[-1]), str):
            node[path[-1]] = scrub(node[path[-1]])
    return doc


def _read_small(path: Path) -> str | None:
    """A regular file's text when it is small (a token or key file); None otherwise. Never blocks on a
    FIFO or a device."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_SECRET_FILE:
            return None
        return path.read_bytes()[:MAX_SECRET_FILE].decode("utf-8", "replace")
    except OSError:
        return None


def _b64(value: str) -> str | None:
    try:
        return base64.b64decode(value.strip(), validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


def remember_kubeconfig(doc: Mapping[str, Any], base: Path) -> None:
    """Learn every credential value of a parsed kubeconfig (``base``: its directory, for relative
    file paths)."""
    users = doc.get("users")
    for entry in users if isinstance(users, list) else []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        values: list[str | None] = []
        for key in ("token", "password", "client-key-data"):
            v = user.get(key)
            if isinstance(v, str):
                values.append(v)
        if isinstance(user.get("client-key-data"), str):
            values.append(_b64(user["client-key-data"]))
        if isinstance(user.get("username"), str) and isinstance(user.get("password"), str):
            basic = f"{user['username']}:{user['password']}".encode()
            values.append(base64.b64encode(basic).decode())
        for key in ("tokenFile", "client-key"):
            v = user.get(key)
            if isinstance(v, str) and v:
                p = Path(v).expanduser()
                values.append(_read_small(p if p.is_absolute() else base / p))
        provider = user.get("auth-provider")
        cfg = provider.get("config") if isinstance(provider, dict) else None
        if isinstance(cfg, dict):
            for key in ("id-token", "refresh-token", "access-token", "client-secret"):
                if isinstance(cfg.get(key), str):
                    values.append(cfg[key])
        remember(*values)
