"""What the pages read: the assessment and the source it came from.

Pages call these and nothing else::

    from dashboard.state import current_assessment, current_source
    a = current_assessment()   # dnsfleet.engine.Assessment of the data source chosen in the sidebar
    src = current_source()     # {"kind", "label", "scanned_at", "contexts", "prometheus_url", ...}

Where the data comes from and how it is cached and kept: ``dashboard.sources``. The widgets that choose
it: ``dashboard.sidebar``.
"""

from __future__ import annotations

from dashboard.sidebar import (
    carry_filters,
    env_kubeconfig,
    list_contexts,
    render_sidebar,
    render_source_error,
)
from dashboard.sources import (
    clear_caches,
    current_assessment,
    current_snapshot,
    current_source,
    one_line,
    source_key,
    store_assessment,
    store_heads_shown,
    store_overview,
    store_path,
)

__all__ = [
    "carry_filters",
    "clear_caches",
    "current_assessment",
    "current_snapshot",
    "current_source",
    "env_kubeconfig",
    "list_contexts",
    "one_line",
    "render_sidebar",
    "render_source_error",
    "source_key",
    "store_assessment",
    "store_heads_shown",
    "store_overview",
    "store_path",
]
