//go:build tools

// Package helmbuild pins the helm command scripts/build-kubernetes.sh builds from this module.
package helmbuild

import _ "helm.sh/helm/v4/cmd/helm"
