//go:build faults

package faults

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// brokerConn is one client connection as RabbitMQ lists it.
type brokerConn struct {
	PID      string // the connection process, what close_connection takes
	PeerPort int
	Name     string // the client's connection_name property
}

var connectionName = regexp.MustCompile(`\{"connection_name","([^"]*)"\}`)

func brokerConns() ([]brokerConn, error) {
	out, err := rabbitmqctl("list_connections", "-q", "--no-table-headers", "pid", "name", "peer_port", "client_properties")
	if err != nil {
		return nil, err
	}
	var conns []brokerConn
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(line), "\t")
		if len(f) != 4 {
			continue
		}
		c := brokerConn{PID: f[0]}
		c.PeerPort, _ = strconv.Atoi(f[2])
		if m := connectionName.FindStringSubmatch(f[3]); m != nil {
			c.Name = m[1]
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// connsNamed returns the broker's connections whose connection_name is one of names: the
// in-process test worker names its connections after the bed.
func connsNamed(names ...string) ([]brokerConn, error) {
	all, err := brokerConns()
	if err != nil {
		return nil, err
	}
	var out []brokerConn
	for _, c := range all {
		for _, n := range names {
			if c.Name == n {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// workerConns is how many connections a worker keeps to the broker: the consumers of the work
// queue, of the due queue (held deliveries) and of the ordering queue (the sequencer), and the
// publisher.
const workerConns = 4

// connsOfProcess returns the broker's connections that come from process pid: those whose
// peer port is the local port of one of its TCP sockets to the broker's port. A worker run as
// a process names its connections "webhookd", like any other, so the name cannot tell it.
func connsOfProcess(pid, brokerPort int) ([]brokerConn, error) {
	ports, err := localPorts(pid, brokerPort)
	if err != nil {
		return nil, err
	}
	all, err := brokerConns()
	if err != nil {
		return nil, err
	}
	var out []brokerConn
	for _, c := range all {
		if ports[c.PeerPort] {
			out = append(out, c)
		}
	}
	return out, nil
}

// localPorts finds the local ports of pid's TCP connections to remotePort, from its open
// socket inodes and the kernel's TCP tables.
func localPorts(pid, remotePort int) (map[int]bool, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	ports := map[int]bool{}
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			if hexPort(fields[2]) == remotePort {
				ports[hexPort(fields[1])] = true
			}
		}
		f.Close()
	}
	return ports, nil
}

func hexPort(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(addr[i+1:], 16, 32)
	if err != nil {
		return -1
	}
	return int(n)
}

// closeConns has the broker close each connection, as an operator's close_connection would.
func closeConns(t *testing.T, conns []brokerConn) {
	t.Helper()
	for _, c := range conns {
		// A connection that went away meanwhile is not an error.
		if out, err := rabbitmqctl("close_connection", c.PID, "webhookd fault test"); err != nil && !strings.Contains(out, "not found") {
			t.Logf("close_connection %s: %v", c.PID, err)
		}
	}
}
