"""Facts about the DNS path, projected from kube-system objects: no decisions (``dnsfleet.rules.path``
decides). Container argument values are dropped (they can carry secrets); only flag names are kept,
plus the value of node-cache's ``-localip`` (the link-local IP pods may name)."""

from __future__ import annotations

import re
from typing import Any

_LINK_LOCAL_RE = re.compile(r"\b(169\.254\.\d{1,3}\.\d{1,3})\b")
_FLAG_RE = re.compile(r"^--?[A-Za-z][A-Za-z0-9_.-]*")


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _ds(v: Any) -> list[dict[str, Any]]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def project_daemonset(obj: dict[str, Any]) -> dict[str, Any]:
    """A DaemonSet as facts: name, labels, container images, flag names, ``-localip`` value and the
    ConfigMaps its pods mount."""
    meta = _d(obj.get("metadata"))
    tmpl = _d(_d(_d(obj.get("spec")).get("template")).get("spec"))
    images: list[str] = []
    flags: list[str] = []
    localip = None
    for c in _ds(tmpl.get("containers")):
        if isinstance(c.get("image"), str) and c["image"]:
            images.append(c["image"])
        words = [str(w) for key in ("command", "args") if isinstance(c.get(key), list) for w in c[key]]
        for i, w in enumerate(words):
            m = _FLAG_RE.match(w)
            if not m:
                continue
            flag = m.group(0)
            if flag not in flags:
                flags.append(flag)
            if flag.lstrip("-") == "localip":
                value = w.split("=", 1)[1] if "=" in w else (words[i + 1] if i + 1 < len(words) else "")
                localip = value.strip() or localip
    cms = [
        str(v["configMap"]["name"])
        for v in _ds(tmpl.get("volumes"))
        if isinstance(v.get("configMap"), dict) and v["configMap"].get("name")
    ]
    labels = _d(meta.get("labels"))
    return {
        "name": meta.get("name") if isinstance(meta.get("name"), str) else None,
        "labels": {str(k): str(v) for k, v in labels.items()},
        "images": images,
        "flags": flags,
        "localip": localip,
        "configmaps": cms,
    }


def configmap_fact(data: dict[str, Any] | None) -> dict[str, Any]:
    """A ConfigMap as facts: its keys and a link-local IP named in its Corefile (NodeLocal DNSCache)."""
    data = _d(data)
    m = _LINK_LOCAL_RE.search(str(data.get("Corefile") or ""))
    return {"keys": sorted(str(k) for k in data), "link_local": m.group(1) if m else None}
