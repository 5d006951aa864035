//go:build goexperiment.runtimesecret

package dek

import "runtime/secret"

// withSecret runs f under runtime/secret: registers and stack used by f are
// erased when it returns, and what it allocates on the heap (the AES key
// schedule) is erased once the garbage collector finds it unreachable, i.e.
// after the DEK has been evicted or replaced.
func withSecret(f func()) { secret.Do(f) }
