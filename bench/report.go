package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Targets on the reference machine (2 cores).
const (
	targetDrainRatio = 0.7
	targetP99        = 5 * time.Millisecond
	targetFanout     = 5000.0
	targetRSSMB      = 150.0
	targetSlowShare  = 0.8
)

type report struct {
	concurrency, prefetch int
	floor                 drainResult
	quorum                drainResult
	classic, classicV2    drainResult
	steady                steadyResult
	floorSteady           steadyResult
	fanout                fanoutResult
	rss                   drainResult
	slow                  slowResult
	slow4                 slowResult // four slow webhooks beside the fast one
	limits                limitsResult
	breaker               breakerResult
	ordered               orderedResult
	machine               machine
	elapsed               time.Duration
	reruns                []string // scenarios run again because the servers were disturbed
}

type machine struct {
	cores    int
	cpu      string
	ramGB    float64
	goVer    string
	rabbitmq string
	mariadb  string
	kernel   string
}

func machineInfo(ctx context.Context) machine {
	m := machine{cores: runtime.NumCPU(), cpu: "unknown", goVer: runtime.Version(), rabbitmq: "unknown", mariadb: "unknown"}
	if out, err := exec.CommandContext(ctx, "nproc").Output(); err == nil {
		m.cores, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		m.goVer = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m.cpu = v
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64)
		m.ramGB = kb / 1024 / 1024
	}
	if out, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(out))
	}
	if conn, err := amqp.Dial(amqpURL); err == nil {
		if v, ok := conn.Properties["version"].(string); ok {
			m.rabbitmq = v
		}
		conn.Close()
	}
	if db, err := sql.Open("mysql", mysqlServer); err == nil {
		db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&m.mariadb)
		db.Close()
	}
	return m
}

func procField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

func yesNo(ok bool) string {
	if ok {
		return "**yes**"
	}
	return "**no**"
}

// us is d spread over n deliveries, in microseconds.
func us(d time.Duration, n int) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)/float64(n))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// num formats n with thousands separators.
func num(n float64) string {
	s := strconv.FormatInt(int64(n+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// runs describes the rates of several runs whose median is reported.
func runs(rates []float64) string {
	if len(rates) < 2 {
		return ""
	}
	var all []string
	for _, r := range rates {
		all = append(all, num(r))
	}
	return fmt.Sprintf(" (median of %d runs: %s)", len(rates), strings.Join(all, ", "))
}

func (r report) print(w io.Writer) {
	m := r.machine
	fmt.Fprintf(w, "\n## webhookd bench, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %d cores (nproc), %s, %.1f GB RAM, Linux %s; %s; RabbitMQ %s; MariaDB %s.\n",
		m.cores, m.cpu, m.ramGB, m.kernel, m.goVer, m.rabbitmq, m.mariadb)
	fmt.Fprintf(w, "Worker: separate process, WEBHOOKD_CONCURRENCY=%d, WEBHOOKD_PREFETCH=%d, quorum work queue unless said, full delivery log.\n\n",
		r.concurrency, r.prefetch)
	fmt.Fprintln(w, "| measurement | result | target | holds |")
	fmt.Fprintln(w, "|---|---|---|---|")
	if r.floor.n > 0 {
		fmt.Fprintf(w, "| bare floor: drain %s events (consume, HMAC-SHA256, POST, ack) | %s deliveries/s%s | — | — |\n",
			num(float64(r.floor.n)), num(r.floor.rate), runs(r.floor.rates))
	}
	if r.quorum.n > 0 {
		res := num(r.quorum.rate) + " deliveries/s"
		target, holds := "≥ 0.7 × floor", "—"
		if r.floor.rate > 0 {
			ratio := r.quorum.rate / r.floor.rate
			res += fmt.Sprintf(" = **%.2f × floor**", ratio)
			holds = yesNo(ratio >= targetDrainRatio)
		}
		fmt.Fprintf(w, "| webhookd: drain %s events, 1 KB data, one webhook each | %s%s | %s | %s |\n",
			num(float64(r.quorum.n)), res, runs(r.quorum.rates), target, holds)
	}
	if r.floorSteady.published > 0 {
		s := r.floorSteady
		fmt.Fprintf(w, "| bare floor: steady %s events/s for 30 s, publish → receipt p50 / p99 / p99.9 | %s / %s / %s (max %s; %s of %s received) | — | — |\n",
			num(float64(s.rate)), ms(s.p50), ms(s.p99), ms(s.p999), ms(s.max), num(float64(s.received)), num(float64(s.published)))
	}
	if r.steady.published > 0 {
		s := r.steady
		fmt.Fprintf(w, "| webhookd: steady %s events/s for 30 s, publish → receipt p50 / p99 / p99.9 | %s / **%s** / %s (max %s; %s of %s received) | p99 ≤ 5 ms | %s |\n",
			num(float64(s.rate)), ms(s.p50), ms(s.p99), ms(s.p999), ms(s.max), num(float64(s.received)), num(float64(s.published)),
			yesNo(s.p99 <= targetP99 && s.received == s.published))
	}
	if r.fanout.events > 0 {
		f := r.fanout
		fmt.Fprintf(w, "| webhookd: one event → %s webhooks (%d events, one at a time) | **%s deliveries/s** (%s per event, first delivery after %s) | ≥ 5,000/s | %s |\n",
			num(float64(f.hooks)), f.events, num(f.rate), ms(f.perEvent), ms(f.firstAfter), yesNo(f.rate >= targetFanout))
	}
	if r.rss.n > 0 {
		fmt.Fprintf(w, "| webhookd: peak RSS (VmHWM) draining a %s-event backlog | **%.0f MB** (drained at %s deliveries/s) | ≤ 150 MB | %s |\n",
			num(float64(r.rss.n)), r.rss.peakMB, num(r.rss.rate), yesNo(r.rss.peakMB <= targetRSSMB))
	}
	if r.slow.n > 0 {
		s := r.slow
		fmt.Fprintf(w, "| webhookd: fast endpoint beside a 5 s one on the same %s events | **%.0f %%** of alone (%s/s beside vs %s/s alone) | ≥ 80 %% | %s |\n",
			num(float64(s.n)), 100*s.share(), num(s.beside), num(s.alone), yesNo(s.share() >= targetSlowShare))
	}
	if r.slow4.n > 0 {
		s := r.slow4
		fmt.Fprintf(w, "| webhookd: fast endpoint beside four 5 s ones on the same %s events | **%.0f %%** of alone (%s/s beside vs %s/s alone) | — | — |\n",
			num(float64(s.n)), 100*s.share(), num(s.beside), num(s.alone))
	}
	r.printProtect(w)
	r.printOrdered(w)
	if r.classic.n > 0 || r.quorum.n > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Work queue type, drain of the same backlog:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| work queue | deliveries/s | RabbitMQ CPU per delivery | all CPU per delivery | backlog publish |")
		fmt.Fprintln(w, "|---|---|---|---|---|")
		for _, q := range []struct {
			name string
			r    drainResult
		}{
			{"quorum (default)", r.quorum},
			{"classic, as declared (version 1 on RabbitMQ 3.10)", r.classic},
			{"classic version 2 (queue-version policy)", r.classicV2},
		} {
			if q.r.n > 0 {
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s events/s |\n", q.name, num(q.r.rate),
					us(q.r.cpuT["rabbitmq"], q.r.n), us(q.r.cpuT.total(), q.r.n), num(float64(q.r.n)/q.r.publish.Seconds()))
			}
		}
	}
	if r.quorum.n > 0 {
		q := r.quorum
		fmt.Fprintf(w, "\nDrain internals (quorum): %s of %s deliveries logged succeeded; mean group commit %.0f claims, %.0f outcomes; webhook cache hit rate %.4f; worker VmHWM %.0f MB.\n",
			num(float64(q.logged)), num(float64(q.n)), q.claimMean, q.recMean, q.cacheHit, q.peakMB)
	}
	for _, d := range []struct {
		name string
		r    drainResult
	}{{"floor", r.floor}, {"webhookd (quorum)", r.quorum}} {
		if d.r.n > 0 {
			fmt.Fprintf(w, "CPU during the %s drain: %s; %s per delivery in all.\n", d.name, d.r.cpu, us(d.r.cpuT.total(), d.r.n))
		}
	}
	for _, s := range []slowResult{r.slow, r.slow4} {
		if s.n > 0 {
			fmt.Fprintf(w, "Slow endpoints (%d): %s of %s fast deliveries arrived within %v beside them; the slow endpoints got %s requests meanwhile. "+
				"Steady rates (second and third quarter of the deliveries): %s/s beside vs %s/s alone. CPU alone: %s. CPU beside: %s.\n",
				s.slowHooks, num(float64(s.besideGot)), num(float64(s.n)), s.window, num(float64(s.slowGot)), num(s.besideMid), num(s.aloneMid), s.cpuAlone, s.cpuBeside)
		}
	}
	r.printProtectDetail(w)
	r.printOrderedDetail(w)
	if len(r.reruns) > 0 {
		fmt.Fprintf(w, "Run again after RabbitMQ or MariaDB was disturbed (restart, lost connection): %s.\n", strings.Join(r.reruns, ", "))
	}
	fmt.Fprintf(w, "\nBench took %.0f s.\n", r.elapsed.Seconds())
}
