// Command etcdserver is the etcd server (go.etcd.io/etcd/server/v3) built
// from the Go module at the version pinned in this directory's go.mod, so
// that the fleet's tests and `make fleet` run the same etcd on every
// machine. It is its own module, outside payhsm's: the server's
// dependencies never enter payhsm's go.mod. The Makefile builds it into
// .tools/etcd-VERSION/etcd (see the etcd target).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
