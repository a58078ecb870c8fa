"""kube-proxy's mode from its configuration document: the rule in one place (pure; no pandas).

An empty or absent ``mode`` is iptables, kube-proxy's default on Linux (rule D5; the
``KubeProxyConfiguration`` reference: https://kubernetes.io/docs/reference/config-api/kube-proxy-config.v1alpha1/).
``dnsfleet.kube.kubeproxy`` reads the ConfigMaps that hold the document; ``rules.path`` decides the
DNS path from the mode.
"""

from __future__ import annotations

import yaml

MODES = ("iptables", "ipvs", "nftables")


def mode_from_config(text: str | None) -> str | None:
    """Mode from a KubeProxyConfiguration document; an empty mode means iptables (D5). None when the
    text is not such a document or names a mode dnsfleet does not know."""
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
    return mode if mode in MODES else None
