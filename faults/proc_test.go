//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/retry"
)

// ProcOptions is how a worker process is configured; zero fields take the defaults below.
type ProcOptions struct {
	DSN             string        // default the bed's database as root
	AMQPURL         string        // default the test broker
	Ladder          retry.Ladder  // default 300ms,600ms
	ShutdownTimeout time.Duration // default 10s
	HTTPTimeout     time.Duration // default 10s
	Concurrency     int           // default 16
	Prefetch        int           // default the worker's (8 × Concurrency)
	RepairAfter     time.Duration // default the worker's (15m)
	// Env is more settings, KEY=value, applied after the others: the circuit breaker and
	// the outage detector are off unless it turns them on.
	Env []string
}

// Proc is `webhookd run` as a process of its own, on a bed's database and queues.
type Proc struct {
	t     *testing.T
	cmd   *exec.Cmd
	Admin string // host:port of /healthz, /readyz, /metrics
	log   string
	exit  chan struct{}
	state *os.ProcessState
}

var procSeq atomic.Int32

// StartProc runs the worker binary and waits until /readyz answers 200. The process is
// killed when the test ends, if it still runs; its log is shown when the test failed.
func StartProc(t *testing.T, bed *testbed.Bed, o ProcOptions) *Proc {
	t.Helper()
	if o.DSN == "" {
		o.DSN = bed.DSN
	}
	if o.AMQPURL == "" {
		o.AMQPURL = testbed.AMQPURL
	}
	if o.Ladder == nil {
		o.Ladder = retry.Ladder{300 * time.Millisecond, 600 * time.Millisecond}
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.HTTPTimeout == 0 {
		o.HTTPTimeout = 10 * time.Second
	}
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	p := &Proc{t: t, Admin: freeAddr(t), exit: make(chan struct{})}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEBHOOKD_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"WEBHOOKD_AMQP_URL="+o.AMQPURL,
		"WEBHOOKD_MYSQL_DSN="+o.DSN,
		"WEBHOOKD_EXCHANGE="+bed.Exchange,
		"WEBHOOKD_QUEUE="+bed.Queue,
		bed.RetryDelaysEnv(o.Ladder),
		"WEBHOOKD_ALLOW_PRIVATE_NETWORKS=true",
		"WEBHOOKD_ADMIN_ADDR="+p.Admin,
		"WEBHOOKD_SHUTDOWN_TIMEOUT="+o.ShutdownTimeout.String(),
		"WEBHOOKD_HTTP_TIMEOUT="+o.HTTPTimeout.String(),
		fmt.Sprintf("WEBHOOKD_CONCURRENCY=%d", o.Concurrency),
		fmt.Sprintf("WEBHOOKD_PREFETCH=%d", o.Prefetch),
		"WEBHOOKD_DISABLE_AFTER=0",
		"WEBHOOKD_BREAKER_AFTER=0",
		"WEBHOOKD_OUTAGE_HOSTS=0",
		"WEBHOOKD_LOG_LEVEL=debug",
		// The race detector waits a second before exiting, which would count against
		// the shutdown timings.
		"GORACE=atexit_sleep_ms=0",
	)
	if o.RepairAfter > 0 {
		env = append(env, "WEBHOOKD_REPAIR_AFTER="+o.RepairAfter.String())
	}
	env = append(env, o.Env...)
	p.log = filepath.Join(t.TempDir(), fmt.Sprintf("worker-%d.log", procSeq.Add(1)))
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "run")
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start worker: %v", err)
	}
	go func() {
		p.cmd.Wait()
		p.state = p.cmd.ProcessState
		logf.Close()
		close(p.exit)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.exit
		}
		p.report()
	})
	if !poll(30*time.Second, 20*time.Millisecond, func() bool { return p.Ready() == http.StatusOK || p.Exited() }) || p.Exited() {
		t.Fatalf("worker process not ready within 30s (exited: %v)", p.Exited())
	}
	return p
}

// report shows the end of the log of a failed test, and fails the test on a data race.
func (p *Proc) report() {
	b, _ := os.ReadFile(p.log)
	if bytes.Contains(b, []byte("WARNING: DATA RACE")) {
		p.t.Errorf("worker process %s reported a data race:\n%s", p.log, b)
		return
	}
	if !p.t.Failed() {
		return
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	p.t.Logf("worker process log %s (last %d lines):\n%s", p.log, len(lines), strings.Join(lines, "\n"))
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Ready asks /readyz and returns its status code, or 0 when the admin server does not answer.
func (p *Proc) Ready() int {
	c := http.Client{Timeout: 500 * time.Millisecond}
	resp, err := c.Get("http://" + p.Admin + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Metric returns the value of the metric line that starts with name (the full series, such
// as `webhookd_messages_total{result="ack"}`), or -1 when /metrics does not answer or has no
// such line.
func (p *Proc) Metric(name string) float64 {
	c := http.Client{Timeout: 500 * time.Millisecond}
	resp, err := c.Get("http://" + p.Admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.exit:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal worker: %v", err)
	}
}

// Wait waits up to timeout for the process to end, and returns its exit code (-1 when a
// signal ended it) and whether it ended in time.
func (p *Proc) Wait(timeout time.Duration) (int, bool) {
	select {
	case <-p.exit:
		return p.state.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// Kill ends the process with SIGKILL, as the kernel's OOM killer or a lost host would.
func (p *Proc) Kill() {
	p.t.Helper()
	p.Signal(syscall.SIGKILL)
	<-p.exit
}

// LogContains reports whether the process has logged s.
func (p *Proc) LogContains(s string) bool {
	b, _ := os.ReadFile(p.log)
	return bytes.Contains(b, []byte(s))
}

// freeAddr returns a loopback address with a port nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
