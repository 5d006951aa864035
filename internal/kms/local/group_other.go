//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package local

import "os"

// fileGroup is unknown here: group read is judged by the mode alone.
func fileGroup(os.FileInfo) (uint32, bool) { return 0, false }

func inGroup(uint32) bool { return true }
