"""What dnsfleet reads in a CoreDNS Corefile, and so all a snapshot keeps of it.

A Corefile can hold credentials: the ``etcd`` plugin's ``credentials`` and ``tls`` lines, ``tsig``
secrets, ``route53`` and ``clouddns`` keys, ``forward`` TLS names, ``kubernetes`` kubeconfig paths. The
collector therefore never stores the text. It keeps only:

- ``plugins``: the names of the plugins of the top-level server blocks (the first word of each line at
  depth 1, kept only when it looks like a plugin name: lowercase letters, digits, ``_`` and ``-``, at
  most 40 characters), in order, each once: ``errors, health, kubernetes, prometheus, forward, cache``;
- ``cluster_domain``: the first zone after ``kubernetes`` on that plugin's line (``cluster.local``), or
  null when the line names none.

Nothing inside a plugin's block (depth 2 and deeper) is read, and no argument other than the
``kubernetes`` zone. Older snapshots carry the whole text (``dns.corefile``); the engine reads it
through the same ``facts`` function.
"""

from __future__ import annotations

import re
from typing import Any

_PLUGIN = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_DNS_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")


def facts(text: str | None) -> dict[str, Any] | None:
    """``{"plugins": [...], "cluster_domain": str | None}`` from a Corefile; None when there is none."""
    if not text or not isinstance(text, str):
        return None
    plugins: list[str] = []
    domain = None
    depth = 0
    for line in text.splitlines():
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        if depth == 1:
            words = s.split()
            word = words[0].rstrip("{")
            if _PLUGIN.fullmatch(word) and word not in plugins:
                plugins.append(word)
            if word == "kubernetes" and domain is None and len(words) > 1:
                zone = words[1].rstrip("{").rstrip(".").lower()
                domain = zone if zone and set(zone) <= _DNS_NAME_CHARS else None
        depth = max(0, depth + s.count("{") - s.count("}"))  # a stray "}" must not hide what follows
    return {"plugins": plugins, "cluster_domain": domain}


def of_dns(dns: dict[str, Any]) -> dict[str, Any] | None:
    """The Corefile facts of a snapshot's ``dns``: ``corefile_facts``, else parsed from an older
    snapshot's ``corefile`` text; None when unknown."""
    stored = dns.get("corefile_facts")
    if isinstance(stored, dict):
        return stored
    return facts(dns.get("corefile"))
