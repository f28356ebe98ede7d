package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
)

// onTerminal runs the binary with args on a pseudo-terminal, as an operator's shell would,
// through util-linux's script(1), and returns what the terminal received.
func onTerminal(t *testing.T, env []string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("script(1) not installed (util-linux): %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	line := binary
	for _, a := range args {
		line += " '" + a + "'"
	}
	cmd := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEBHOOKD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v on a terminal: %v\n%q", args, err, out)
	}
	return string(out)
}

// TestRedeliverProgress checks what `redeliver` and `replay` print: the count per webhook of
// a dry run; on a terminal a progress line drawn in place and erased before the summary;
// elsewhere no terminal control at all.
func TestRedeliverProgress(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	a := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	b := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/b"})
	off := false
	late := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/late", Enabled: &off})
	bed.StartWorker(testbed.WorkerOptions{})
	since := time.Now().Add(-time.Minute).Format(time.RFC3339)
	for i := range 5 {
		bed.PublishEvent("TASK.CREATED", testbed.Event(fmt.Sprint("e", i), "TASK.CREATED", 1, ""))
	}
	// A delivery's row is written with its outcome, after the receiver has it.
	testbed.Eventually(t, 20*time.Second, "10 deliveries succeeded", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'") == 10
	})
	env := bedEnv(bed)

	out, _, code := webhookd(t, env, "redeliver", "--event", "e1", "--dry-run")
	want := fmt.Sprintf("2 redeliveries (dry run: true)\n  webhook %d: 1\n  webhook %d: 1\n", a, b)
	if code != 0 || out != want {
		t.Errorf("dry run: exit %d, printed %q, want %q", code, out, want)
	}

	term := onTerminal(t, env, "redeliver", "--webhook", fmt.Sprint(a))
	if !strings.Contains(term, "\rpublished 5 of 5 redeliveries (100%)") || !strings.Contains(term, "\r\x1b[K5 redeliveries published in ") {
		t.Errorf("on a terminal, redeliver printed %q: want the progress line, erased, then the summary", term)
	}
	rc.Wait(t, "/a", 10, 20*time.Second)

	out, _, code = webhookd(t, env, "redeliver", "--webhook", fmt.Sprint(b))
	if code != 0 || strings.ContainsAny(out, "\r\x1b") || !strings.HasPrefix(out, "5 redeliveries published in ") {
		t.Errorf("piped, redeliver printed %q: want the summary alone, without terminal controls", out)
	}

	bed.Exec("UPDATE webhooks SET enabled = 1 WHERE id = ?", late)
	out, _, _ = webhookd(t, env, "replay", "--webhook", fmt.Sprint(late), "--since", since, "--dry-run")
	if want := fmt.Sprintf("5 replayed events (dry run: true)\n  webhook %d: 5\n", late); out != want {
		t.Errorf("replay dry run printed %q, want %q", out, want)
	}
	term = onTerminal(t, env, "replay", "--webhook", fmt.Sprint(late), "--since", since)
	if !strings.Contains(term, "\rcreated 5 of 5 deliveries (100%)") || !strings.Contains(term, "\rpublished 5 of 5 replayed events (100%)") ||
		!strings.Contains(term, "\r\x1b[K5 replayed events published in ") {
		t.Errorf("on a terminal, replay printed %q: want both steps' lines, then the summary", term)
	}
	rc.Wait(t, "/late", 5, 20*time.Second)
}
