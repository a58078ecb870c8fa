"""The one-line failures a mitigation step can end in."""

from __future__ import annotations

from dnsfleet.kube.errors import ConfigError, KubeError
from dnsfleet.scrub import scrub


class MitigationError(Exception):
    """A mitigation step that cannot go on. ``str(err)`` is one line saying what and why."""

    def __init__(self, message: object = "") -> None:
        super().__init__(scrub(str(message)))  # the one scrubber, like every kube error


# What the callers (the CLI, the dashboard's controller) turn into one short error line: a refused
# step, a cluster that answered with an error or not at all, an unusable kubeconfig or argument.
FAILURES: tuple[type[Exception], ...] = (MitigationError, KubeError, ConfigError)
