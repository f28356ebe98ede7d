package main

import (
	"bufio"
	"bytes"
	"context"
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
	"time"
)

// proc is a process the bench started (webhookd or the floor). A sampler follows its peak
// resident set size (VmHWM) until it exits.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	admin  string // webhookd's admin address, "" for the floor
	peakKB atomic.Int64
	exited chan struct{}
}

// buildWorker builds webhookd into dir with `go build -o`.
func buildWorker(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "webhookd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build webhookd: %v: %s", err, out)
	}
	return bin, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the bench inside the webhookd module")
	}
	return filepath.Dir(mod), nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startWorker runs `webhookd run` against the scenario's database, exchange and queue, with
// the bench's concurrency and prefetch unless extra says otherwise, and waits until /readyz
// answers 200 (it then consumes).
func (e *env) startWorker(ctx context.Context, extra map[string]string) (*proc, error) {
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	settings := map[string]string{
		"AMQP_URL":               amqpURL,
		"MYSQL_DSN":              e.dsn,
		"EXCHANGE":               e.exchange,
		"QUEUE":                  e.queue,
		"QUEUE_TYPE":             e.queueType,
		"RETRY_DELAYS":           "1m,5m,10m",
		"ALLOW_PRIVATE_NETWORKS": "true",
		"ADMIN_ADDR":             admin,
		"CONCURRENCY":            strconv.Itoa(e.b.concurrency),
		"PREFETCH":               strconv.Itoa(e.b.prefetch),
		"SHUTDOWN_TIMEOUT":       "2s",
	}
	for k, v := range extra {
		settings[k] = v
	}
	p, err := e.b.spawn(ctx, "webhookd-"+e.name, e.b.bin, []string{"run"}, workerEnv(settings))
	if err != nil {
		return nil, err
	}
	p.admin = admin
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("webhookd exited before it was ready; see %s", p.log)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("webhookd not ready after 30s; see %s", p.log)
		}
	}
}

// startFloor runs the bare floor as its own process on queue.
func (e *env) startFloor(ctx context.Context, url string) (*proc, error) {
	args := []string{"floor", "-queue", e.queue, "-url", url,
		"-concurrency", strconv.Itoa(e.b.concurrency), "-prefetch", strconv.Itoa(e.b.prefetch)}
	return e.b.spawn(ctx, "floor-"+e.name, e.b.self, args, os.Environ())
}

func (b *bench) spawn(ctx context.Context, name, bin string, args, environ []string) (*proc, error) {
	logPath := filepath.Join(b.tmp, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = environ
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	b.cleanups.add(p.stop)
	go func() {
		cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	go p.sample()
	return p, nil
}

// sample reads the process's VmHWM every 50 ms until it exits.
func (p *proc) sample() {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		p.readHWM()
		select {
		case <-p.exited:
			return
		case <-t.C:
		}
	}
}

func (p *proc) readHWM() {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if kb > p.peakKB.Load() {
				p.peakKB.Store(kb)
			}
			return
		}
	}
}

// peakMB is the highest VmHWM seen, read once more now.
func (p *proc) peakMB() float64 {
	p.readHWM()
	return float64(p.peakKB.Load()) / 1024
}

// stop sends SIGTERM and waits for the process, killing it after 10 s.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// metrics scrapes webhookd's /metrics and returns sample name (with labels) → value.
func (p *proc) metrics() (map[string]float64, error) {
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(text), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}

// trouble reports the first warning or error webhookd logged, if any: a lost connection, a
// database pause. A scenario whose worker had trouble measured the trouble, not webhookd.
func (p *proc) trouble() error {
	f, err := os.Open(p.log)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			if len(line) > 300 {
				line = line[:300] + "…"
			}
			return fmt.Errorf("webhookd logged trouble: %s", line)
		}
	}
	return nil
}

// serverPIDs names the running RabbitMQ and MariaDB processes, to tell whether either
// restarted during a scenario.
func serverPIDs() string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _, ok := procCPU(pid)
		switch {
		case !ok:
		case comm == "mariadbd" || comm == "mysqld":
			pids = append(pids, comm+":"+e.Name())
		case comm == "beam.smp" && rabbitServer(pid):
			pids = append(pids, comm+":"+e.Name())
		}
	}
	return strings.Join(pids, ",")
}

// rabbitServer tells a RabbitMQ node from the other Erlang VMs on the machine: rabbitmqctl and
// its kin run beam.smp too, for a second or two each.
func rabbitServer(pid int) bool {
	cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && bytes.Contains(cmd, []byte("\x00rabbit\x00boot\x00"))
}
