package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/webhookd/webhookd/internal/testbed"
)

// selector is one metric a PromQL expression reads, with the label matchers that pick its
// series.
type selector struct {
	metric   string
	matchers []matcher
}

type matcher struct{ label, op, value string }

// promqlKeywords are PromQL's words that are not metric names.
var promqlKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "offset": true, "and": true, "or": true, "unless": true, "inf": true, "nan": true, "atan2": true,
}

// aggregations are PromQL's aggregation operators, which may take by or without before their
// parentheses.
var aggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true, "count": true,
	"count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
}

// labelLists are the keywords followed by a parenthesised list of label names.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

var matcherRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)

// selectors returns the metrics expr reads: every identifier that is not a function, an
// aggregation operator, a keyword, a label name of by/without/on/ignoring lists or inside braces, a
// number, a duration or a string, with the matchers of the braces that follow it.
func selectors(expr string) []selector {
	var out []selector
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	skipSpace := func(i int) int {
		for i < len(expr) && strings.ContainsRune(" \t\n\r", rune(expr[i])) {
			i++
		}
		return i
	}
	// closing returns the index after the bracket closing the one at i, strings skipped.
	closing := func(i int, open, close byte) int {
		depth := 0
		for ; i < len(expr); i++ {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				for i++; i < len(expr) && expr[i] != c; i++ {
					if expr[i] == '\\' && c != '`' {
						i++
					}
				}
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end := strings.IndexByte(expr[i+1:], c)
			if end < 0 {
				return out
			}
			i += end + 2
		case c == '[':
			i = closing(i, '[', ']')
		case c == '{': // matchers of a selector without a name: nothing to check by name
			i = closing(i, '{', '}')
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			start := i
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
			word := expr[start:i]
			next := skipSpace(i)
			switch {
			case labelLists[strings.ToLower(word)]:
				if next < len(expr) && expr[next] == '(' {
					i = closing(next, '(', ')')
				}
			case promqlKeywords[strings.ToLower(word)], aggregations[strings.ToLower(word)]:
			case next < len(expr) && expr[next] == '(': // a function or an aggregation
			default:
				s := selector{metric: word}
				if next < len(expr) && expr[next] == '{' {
					end := closing(next, '{', '}')
					for _, m := range matcherRE.FindAllStringSubmatch(expr[next:end], -1) {
						s.matchers = append(s.matchers, matcher{m[1], m[2], m[3]})
					}
					i = end
				}
				out = append(out, s)
			}
		default:
			i++
		}
	}
	return out
}

func TestSelectors(t *testing.T) {
	tests := []struct{ expr, want string }{
		{`sum by (outcome) (rate(webhookd_deliveries_total{job=~"$job"}[5m]))`, `webhookd_deliveries_total{job=~".*"}`},
		{`histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m] offset 1h)))`, `a_bucket`},
		{`max(x) > max(y) or absent(z{queue="a b", kind!="}"})`, `x y z{queue="a b",kind!="}"}`},
		{`a / on (instance) group_left (version) b and c > bool 0.5e3`, `a b c`},
		{`count(up == 0) unless vector(1)`, `up`},
		{`label_replace(m, "dst", "$1", "src", "(.*)")`, `m`},
	}
	for _, tt := range tests {
		var got []string
		for _, s := range selectors(strings.ReplaceAll(tt.expr, "$job", ".*")) {
			ms := make([]string, len(s.matchers))
			for i, m := range s.matchers {
				ms[i] = m.label + m.op + `"` + m.value + `"`
			}
			if len(ms) > 0 {
				got = append(got, s.metric+"{"+strings.Join(ms, ",")+"}")
			} else {
				got = append(got, s.metric)
			}
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("selectors(%s) = %v, want %s", tt.expr, got, tt.want)
		}
	}
}

// deployExprs returns the PromQL of the alert rules and of the dashboard's panels and
// variables, each named by where it comes from, with Grafana's variables given values.
func deployExprs(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	b, err := os.ReadFile("deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	b, err = os.ReadFile("deploy/grafana/webhookd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Type  string
				Query json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("webhookd.json: %v", err)
	}
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$job", ".*")
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			exprs[fmt.Sprintf("panel %q target %d", p.Title, i)] = grafana.Replace(tg.Expr)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_]+\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
		}
		exprs["variable "+v.Name] = m[1]
	}
	return exprs
}

// TestDeployedExpressionsAreValid has promtool parse every dashboard expression, as rules of
// a file of its own; alerts.yaml itself is checked by `make test`.
func TestDeployedExpressionsAreValid(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if testing.Short() {
			t.Skip("promtool not installed (scripts/services.sh installs it)")
		}
		t.Fatalf("promtool not installed: run scripts/services.sh")
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	exprs := deployExprs(t)
	names := slices.Sorted(maps.Keys(exprs))
	for i, name := range names {
		q, _ := json.Marshal(exprs[name])
		fmt.Fprintf(&rules, "      - record: expr_%d\n        expr: %s\n", i, q)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules of the dashboard's expressions: %v\n%s\nexpressions in order: %v", err, out, names)
	}
}

// TestDeployedMetricsAreExported runs `webhookd run` on the real services and checks that its
// /metrics exports every metric the alert rules and the dashboard read, before any event:
// a labelled metric with a series its matchers select (job and instance are Prometheus's).
func TestDeployedMetricsAreExported(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	addr := freeAddr(t)
	env := append(bedEnv(bed), "WEBHOOKD_ADMIN_ADDR="+addr)
	cmd := exec.Command(binary, "run")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEBHOOKD_") && !strings.HasPrefix(kv, "OTEL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	get := func(path string) (int, string) {
		c := http.Client{Timeout: time.Second}
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testbed.Eventually(t, 30*time.Second, "the worker to be ready", func() bool {
		code, _ := get("/readyz")
		return code == http.StatusOK
	})
	_, metrics := get("/metrics")

	// Every exported series: its name and labels.
	type series struct {
		name   string
		labels map[string]string
	}
	var exported []series
	names := map[string]bool{}
	for _, line := range strings.Split(metrics, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		s := series{name: line[:end], labels: map[string]string{}}
		if line[end] == '{' {
			for _, m := range matcherRE.FindAllStringSubmatch(line[end:strings.IndexByte(line, '}')+1], -1) {
				s.labels[m[1]] = m[3]
			}
		}
		exported = append(exported, s)
		names[s.name] = true
	}
	if !names["webhookd_ready"] {
		t.Fatalf("/metrics has no webhookd_ready:\n%s\nworker log:\n%s", metrics, logs.String())
	}

	checked := map[string]bool{}
	for where, expr := range deployExprs(t) {
		sels := selectors(expr)
		if len(sels) == 0 {
			t.Errorf("%s: no metric found in %q", where, expr)
		}
		for _, sel := range sels {
			checked[sel.metric] = true
			if !strings.HasPrefix(sel.metric, "webhookd_") {
				t.Errorf("%s reads %s, which webhookd does not export", where, sel.metric)
				continue
			}
			found := false
			for _, s := range exported {
				if s.name == sel.metric && selects(sel.matchers, s.labels) {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("%s reads %v, but /metrics has no such series", where, sel)
			}
		}
	}
	// The dashboard and the rules between them read at least these.
	for _, m := range []string{"webhookd_deliveries_total", "webhookd_attempt_duration_seconds_bucket", "webhookd_deliveries_in_flight",
		"webhookd_queue_messages", "webhookd_queue_consumers", "webhookd_oldest_overdue_seconds", "webhookd_repair_after_seconds",
		"webhookd_breakers_open", "webhookd_ready", "webhookd_retries_parked_total", "webhookd_dead_lettered_total"} {
		if !checked[m] {
			t.Errorf("neither the dashboard nor the rules read %s", m)
		}
	}
}

// selects reports whether matchers pick a series with labels. job and instance are the
// labels Prometheus adds when it scrapes, not the worker's.
func selects(matchers []matcher, labels map[string]string) bool {
	for _, m := range matchers {
		if m.label == "job" || m.label == "instance" {
			continue
		}
		v := labels[m.label]
		switch m.op {
		case "=":
			if v != m.value {
				return false
			}
		case "!=":
			if v == m.value {
				return false
			}
		case "=~", "!~":
			re, err := regexp.Compile("^(?:" + m.value + ")$")
			if err != nil || re.MatchString(v) != (m.op == "=~") {
				return false
			}
		}
	}
	return true
}
