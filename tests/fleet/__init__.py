"""The real multi-cluster test fleet (kube-apiserver + etcd per cluster, Prometheus). See fleet.py."""
