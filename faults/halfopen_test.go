//go:build faults

package faults

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/webhookd/webhookd/internal/testbed"
)

// TestMariaDBSilent puts a proxy between the worker and MariaDB and, while events flow, makes
// every database connection the worker holds go silent: the server drops the sessions, the
// worker's sockets stay open and never answer. Unlike a stopped server or a KILL, nothing
// tells the worker; it must not wait on them forever.
func TestMariaDBSilent(t *testing.T) {
	bed := testbed.New(t)
	cfg, err := mysql.ParseDSN(bed.DSN)
	if err != nil {
		t.Fatal(err)
	}
	proxy := StartProxy(t, cfg.Addr)
	cfg.Addr = proxy.Addr()
	l := NewLedger(t, bed, 2)
	p := StartProc(t, bed, ProcOptions{DSN: cfg.FormatDSN()})
	flow := l.Flow(600, 10*time.Millisecond)
	testbed.Eventually(t, 30*time.Second, "deliveries before the fault", func() bool { return l.Delivered() >= 100 })
	silenced := time.Now()
	n := proxy.Silence()
	t.Logf("silenced %d database connections", n)
	before := l.Delivered()
	testbed.Eventually(t, 2*time.Minute, "deliveries to go on after the database connections went silent", func() bool {
		return l.Delivered() > before+50
	})
	t.Logf("deliveries went on %v after the silence", time.Since(silenced).Round(100*time.Millisecond))
	flow.Wait(t)
	l.Check(t, "mariadb connections silent", 2*time.Minute, Expect{DuplicatePercent: 1})
	if p.Ready() != http.StatusOK {
		t.Errorf("/readyz = %d after the fault, want 200", p.Ready())
	}
}

// TestBrokerSilent does the same to the worker's connections to RabbitMQ: the broker sees
// them closed and puts the unacknowledged messages back; the worker sees nothing and must
// find out from missing heartbeats, reconnect, and deliver them.
func TestBrokerSilent(t *testing.T) {
	bed := testbed.New(t)
	u, err := url.Parse(testbed.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := StartProxy(t, net.JoinHostPort(u.Hostname(), strconv.Itoa(brokerPort(t))))
	u.Host = proxy.Addr()
	l := NewLedger(t, bed, 2)
	l.Respond(func(h Hit, r *http.Request) int { return hold(r, 20*time.Millisecond) })
	p := StartProc(t, bed, ProcOptions{AMQPURL: u.String()})
	ready := watchReady(t, p)
	flow := l.Flow(600, 20*time.Millisecond)
	testbed.Eventually(t, 30*time.Second, "deliveries before the fault", func() bool { return l.Delivered() >= 100 })
	silenced := time.Now()
	n := proxy.Silence()
	t.Logf("silenced %d broker connections", n)
	testbed.Eventually(t, 2*time.Minute, "/readyz to go 503 and back", func() bool {
		_, ok := ready.outage(silenced)
		return ok
	})
	d, _ := ready.outage(silenced)
	t.Logf("the worker noticed and reconnected %v after the silence (/readyz 503 for %v)", time.Since(silenced).Round(100*time.Millisecond), d.Round(time.Millisecond))
	flow.Wait(t)
	l.Check(t, "broker connections silent", 2*time.Minute, Expect{DuplicatePercent: 1})
}

// TestMariaDBCommitAnswerLost loses the answer to some of the worker's COMMITs: the server
// commits, and the worker's connection drops before it hears so. The worker cannot tell a
// committed group commit from one rolled back, and must end up right either way: a claim it
// made must not be taken for another copy's, an outcome must not be lost.
func TestMariaDBCommitAnswerLost(t *testing.T) {
	bed := testbed.New(t)
	cfg, err := mysql.ParseDSN(bed.DSN)
	if err != nil {
		t.Fatal(err)
	}
	proxy := StartMySQLProxy(t, cfg.Addr)
	cfg.Addr = proxy.Addr()
	l := NewLedger(t, bed, 3)
	// The third webhook always fails, so that failed deliveries are recorded and counted
	// against it too.
	broken := l.Hooks[2]
	l.Respond(func(h Hit, r *http.Request) int {
		if h.Webhook == broken {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	StartProc(t, bed, ProcOptions{DSN: cfg.FormatDSN()})
	// A slow network and a fast flow, so that group commits carry several events each.
	proxy.SetLatency(3 * time.Millisecond)
	flow := l.Flow(1500, 2*time.Millisecond)
	testbed.Eventually(t, 30*time.Second, "deliveries before the fault", func() bool { return l.Delivered() >= 100 })
	const cuts = 30
	proxy.CutCommits(cuts, 6)
	testbed.Eventually(t, time.Minute, "the COMMIT answers to be lost", func() bool { return proxy.Cuts() == cuts })
	flow.Wait(t)
	tally := l.Check(t, "mariadb commit answer lost", 90*time.Second, Expect{Failed: 1500, DuplicatePercent: 1})
	// Nothing resets the broken webhook's count: it is its failed deliveries, each once.
	if n := bed.Count("SELECT consecutive_failures FROM webhooks WHERE id=?", broken); n != tally.Failed {
		t.Errorf("webhook %d: %d failures in a row counted for %d failed deliveries", broken, n, tally.Failed)
	}
}
