// Wrapper main for etcd: identical to upstream server/main.go. Built by tests/fleet/build.sh.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
