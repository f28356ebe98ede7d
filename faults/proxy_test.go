//go:build faults

package faults

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy between the worker and a server, in the manner of toxiproxy, that can
// make the connections through it go silent: the server side is closed, so that the server
// forgets the session (and rolls back its transaction), while the client side stays open and
// swallows whatever the client sends, never answering and never closing. That is what a
// client sees when a firewall or NAT drops its state, or the server's host vanishes: nothing
// tells it the connection is gone, so only its own timeouts can.
//
// A proxy made with StartMySQLProxy also reads the client's MySQL packets, so that it can
// lose the answer to a COMMIT (CutCommits): the server commits, the client sees its
// connection drop and cannot tell whether the transaction made it.
type Proxy struct {
	ln     net.Listener
	target string
	mysql  bool
	// commitCuts is how many COMMITs are still to lose the answer of, one in every
	// cutEvery; cut counts those lost, commits those seen.
	commitCuts, cut, cutEvery, commits atomic.Int32
	// latency delays every answer from the server, in nanoseconds.
	latency atomic.Int64

	mu    sync.Mutex
	links map[*link]bool
	wg    sync.WaitGroup
}

type link struct {
	client, server net.Conn
	silent         atomic.Bool
	// cutOnReply drops the server's next answer and closes both sides instead.
	cutOnReply atomic.Bool
}

// StartProxy listens on a loopback port and forwards each connection to target. It is
// closed, with every connection through it, when the test ends.
func StartProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, links: map[*link]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// StartMySQLProxy is StartProxy for a MySQL server, able to CutCommits.
func StartMySQLProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p := StartProxy(t, target)
	p.mysql = true
	return p
}

// CutCommits makes n of the next COMMITs through the proxy, one in every every, reach the
// server and lose their answer: the connection is closed instead. The commits in between go
// through, so that what the client does after a lost answer can succeed.
func (p *Proxy) CutCommits(n, every int) {
	p.cutEvery.Store(int32(every))
	p.commitCuts.Add(int32(n))
}

// SetLatency delays every answer of the server by d.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Cuts is how many COMMIT answers have been lost so far.
func (p *Proxy) Cuts() int { return int(p.cut.Load()) }

// Addr is the address to connect to instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		l := &link{client: client, server: server}
		p.mu.Lock()
		p.links[l] = true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.upstream(l)
		go p.downstream(l)
	}
}

// upstream copies client to server; once the link is silent it reads and drops.
func (p *Proxy) upstream(l *link) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	var pending []byte
	for {
		n, err := l.client.Read(buf)
		if n > 0 && !l.silent.Load() {
			if p.mysql {
				pending = p.forwardPackets(l, append(pending, buf[:n]...))
			} else {
				l.server.Write(buf[:n])
			}
		}
		if err != nil {
			break
		}
	}
	l.server.Close()
	p.forget(l)
}

// forwardPackets forwards the whole MySQL packets at the start of b (3 bytes of length, 1 of
// sequence, the payload) and returns the incomplete rest. A COMMIT (COM_QUERY "COMMIT") is
// marked to lose its answer while cuts are asked for.
func (p *Proxy) forwardPackets(l *link, b []byte) []byte {
	for len(b) >= 4 {
		size := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
		if len(b) < 4+size {
			break
		}
		pkt := b[:4+size]
		if size > 1 && pkt[4] == 0x03 && strings.EqualFold(strings.TrimSpace(string(pkt[5:])), "COMMIT") {
			if every := p.cutEvery.Load(); every > 0 && p.commits.Add(1)%every == 0 {
				if p.commitCuts.Add(-1) >= 0 {
					l.cutOnReply.Store(true)
				} else {
					p.commitCuts.Add(1)
				}
			}
		}
		l.server.Write(pkt)
		b = b[4+size:]
	}
	return append([]byte(nil), b...)
}

// downstream copies server to client; a server that closes a live link closes the client.
func (p *Proxy) downstream(l *link) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := l.server.Read(buf)
		if l.silent.Load() {
			return
		}
		if d := time.Duration(p.latency.Load()); d > 0 && n > 0 {
			<-time.After(d) // the fault: a slow network
		}
		if n > 0 && l.cutOnReply.Load() {
			// The server has committed; the client never learns it.
			p.cut.Add(1)
			l.server.Close()
			break
		}
		if n > 0 {
			if _, werr := l.client.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	l.client.Close()
}

func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.links, l)
}

// Silence makes every connection open now go silent, and returns how many. Connections made
// afterwards work normally.
func (p *Proxy) Silence() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for l := range p.links {
		if !l.silent.Swap(true) {
			l.server.Close()
			n++
		}
	}
	return n
}

// Cut closes every connection open now, both sides, as a reset would.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for l := range p.links {
		l.server.Close()
		l.client.Close()
		n++
	}
	return n
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for l := range p.links {
		l.server.Close()
		l.client.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
