"""Evidence over time (issue 17 §1): what Prometheus saw before and after a change.

- ``series``: counter arithmetic (increases with resets and gaps), downsampling, window statistics.
- ``query``: range queries against a Prometheus-compatible API (``collect.prom.PromClient``), per node and
  per cluster, into the snapshot's ``evidence`` section.
- ``verify``: a verdict per applied mitigation (improved / unchanged / worse / not enough data) from the
  same-length windows before and after it, with the numbers behind it; probe runs (``dnsfleet.probe``)
  give a second, client-side verdict.
"""
