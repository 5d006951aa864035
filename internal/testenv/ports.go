package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Ports are picked below the kernel's ephemeral range: a port the kernel
// hands out for bind(":0") is also the kind it hands to outgoing
// connections, which could take it between our check and the server's
// bind.
const portLow = 20000

func portHigh() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > portLow+1000 {
				return lo - 1
			}
		}
	}
	return 30999
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort() (int, error) {
	return FreePortRange(1)
}

// FreePortRange returns the first of n consecutive TCP ports on 127.0.0.1
// that are all free now (for kseal's port-per-broker gateway).
func FreePortRange(n int) (int, error) {
	if n < 1 || n > 1000 {
		return 0, fmt.Errorf("testenv: FreePortRange(%d): want 1..1000 ports", n)
	}
	hi := portHigh()
	for try := 0; try < 200; try++ {
		start := portLow + rand.IntN(hi-portLow-n)
		if portsFree(start, n) {
			return start, nil
		}
	}
	return 0, errors.New("testenv: no free port range found on 127.0.0.1")
}

func portsFree(start, n int) bool {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for p := start; p < start+n; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		ls = append(ls, l)
	}
	return true
}
