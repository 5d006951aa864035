//go:build !goexperiment.runtimesecret

package dek

// withSecret runs f. Built with GOEXPERIMENT=runtimesecret it uses
// runtime/secret instead, so the heap memory f allocates (the AES key
// schedule) is erased once unreachable.
func withSecret(f func()) { f() }
