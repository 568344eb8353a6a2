package main

import (
	"fmt"

	"go.etcd.io/etcd/api/v3/version"
)

func printVersion() {
	fmt.Printf("etcd Version: %s\n", version.Version)
}
