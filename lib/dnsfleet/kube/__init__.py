"""How dnsfleet talks to Kubernetes: the one door every cluster call goes through.

- ``errors``: ``ConfigError``, ``KubeError`` (``ResourceError``: an error status; ``ClusterFailed``: no
  usable answer), all one line.
- ``config``: kubeconfig files and contexts, ``Target``, ``resolve_targets`` and the one client factory
  ``new_api_client`` (exec plugins with a timeout, optional impersonation).
- ``request``: ``Api``, the one request class for every verb (timeouts, retries, scrubbing).
- ``lists``: pagination, 410 restarts, protobuf with a JSON fallback; ``proto`` and ``typed``: the wire
  formats of the big lists.
- ``refs``: ``ObjectRef``; ``client``: ``Kube``, object verbs, identity and access reviews by name.
- ``execauth``: credential plugins with a time and output limit; ``kubeproxy``: kube-proxy's mode.
- ``bounds``: the wall-clock deadline and byte cap of every request (also used for Prometheus).

Every error text goes through the one scrubber, ``dnsfleet.scrub``.

Above this package: ``collect`` (the scan) and ``mitigate`` (the changes). Nothing here scores or decides.
"""

from dnsfleet.kube.client import FIELD_MANAGER, Kube
from dnsfleet.kube.config import (
    Target,
    context_target,
    kubeconfig_paths,
    list_contexts,
    new_api_client,
    resolve_targets,
)
from dnsfleet.kube.errors import ClusterFailed, ConfigError, KubeError, ResourceError
from dnsfleet.kube.lists import list_all, list_pages
from dnsfleet.kube.refs import ObjectRef
from dnsfleet.kube.request import Api

__all__ = [
    "FIELD_MANAGER",
    "Api",
    "ClusterFailed",
    "ConfigError",
    "Kube",
    "KubeError",
    "ObjectRef",
    "ResourceError",
    "Target",
    "context_target",
    "kubeconfig_paths",
    "list_all",
    "list_contexts",
    "list_pages",
    "new_api_client",
    "resolve_targets",
]
