// Thin main around the upstream etcd entry point (what go.etcd.io/etcd/v3's
// main.go does), in its own module so etcd's dependency graph stays exactly
// the one etcd was released with.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
