"""kube-proxy's mode, read from its configuration ConfigMaps: the one place that reads them (the
document -> mode rule is ``dnsfleet.rules.kubeproxy``).

kubeadm keeps the ``KubeProxyConfiguration`` in ConfigMap ``kube-system/kube-proxy`` (key
``config.conf``), EKS in ``kube-system/kube-proxy-config`` (key ``config``); other distributions use
other keys, so a value mentioning ``mode`` is read when the usual key is absent.
"""

from __future__ import annotations

from collections.abc import Mapping

from dnsfleet.rules.kubeproxy import mode_from_config

# (ConfigMap name in kube-system, the key that usually holds the configuration), in the order read.
CONFIGMAPS = (("kube-proxy", "config.conf"), ("kube-proxy-config", "config"))
# the document -> mode rule lives in rules/ (D5); re-exported under the name the readers use
kube_proxy_mode_from_config = mode_from_config


def kube_proxy_mode(
    kube_proxy: Mapping[str, str] | None,
    kube_proxy_config: Mapping[str, str] | None,
    present: bool | None = None,
) -> str | None:
    """The mode from the data of ConfigMaps ``kube-proxy`` and ``kube-proxy-config`` (None: absent).

    ``none`` when neither exists and kube-proxy is known not to run (replaced, e.g. by Cilium); None
    (unknown) when nothing says.
    """
    for data, key in zip((kube_proxy, kube_proxy_config), (k for _, k in CONFIGMAPS), strict=True):
        if data is None:
            continue
        text = data.get(key)
        if text is None:
            text = next((v for v in data.values() if isinstance(v, str) and "mode" in v), None)
        mode = kube_proxy_mode_from_config(text)
        if mode is not None:
            return mode
    if kube_proxy is None and kube_proxy_config is None and present is False:
        return "none"
    return None
