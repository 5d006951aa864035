//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package local

import (
	"os"
	"slices"
	"syscall"
)

// fileGroup is the group owning fi's file.
func fileGroup(fi os.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Gid, true
}

// inGroup reports whether the process is in group gid: its real or
// effective group, or a supplementary one (where Kubernetes puts fsGroup).
func inGroup(gid uint32) bool {
	if uint32(os.Getgid()) == gid || uint32(os.Getegid()) == gid {
		return true
	}
	groups, err := os.Getgroups()
	return err == nil && slices.Contains(groups, int(gid))
}
