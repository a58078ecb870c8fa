"""dnsfleet: fleet-wide risk of the conntrack/DNAT DNS race (5-second DNS delays) on Kubernetes."""

__version__ = "0.1.0"
