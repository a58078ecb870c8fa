module local.test/etcd-build

go 1.25.0
