module dnsfleet.test/coredns

go 1.21
