//go:build tools

// Package tools names the control-plane programs this module builds, so that `go mod tidy` keeps their
// dependencies in go.mod and go.sum. Never compiled: build.sh runs `go build` on these import paths.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
