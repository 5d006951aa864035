//go:build !linux

package local

import "errors"

// watchStore: no change notification here; the KMS checks the store every
// ReloadInterval.
func watchStore(string) (<-chan struct{}, func(), error) {
	return nil, nil, errors.New("not supported on this system")
}
