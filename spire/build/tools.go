//go:build tools

// Package spirebuild pins the SPIRE release that meshauth's tests and examples run.
// scripts/build-spire.sh builds the two commands imported below from this module.
package spirebuild

import (
	_ "github.com/spiffe/spire/cmd/spire-agent"
	_ "github.com/spiffe/spire/cmd/spire-server"
)
