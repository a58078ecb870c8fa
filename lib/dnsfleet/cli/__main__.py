"""``python -m dnsfleet.cli``: the same as the ``dnsfleet`` console script."""

from dnsfleet.cli import entry

entry()
