//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package local

import "context"

// lockFile is a no-op where flock is unavailable: concurrent `kseal kms`
// writers are then not serialised across processes, only within one.
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
