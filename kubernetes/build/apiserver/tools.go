//go:build tools

// Package kubernetesbuild pins the commands scripts/build-kubernetes.sh builds from this module.
package kubernetesbuild

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
