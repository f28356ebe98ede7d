package api

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// The browser and its driver: Debian's chromium and npm's playwright-core, which
// scripts/services.sh installs (make test runs it first).
const (
	chromiumPath = "/usr/bin/chromium"
	browserDir   = "testdata/browser"
	screenshot   = "../docs/portal.png"
)

// TestPortalInBrowser opens the portal in a real headless chromium with account 1's link,
// finds its failed delivery, opens its attempts, presses Retry and sees it succeed, then
// checks account 2's link shows none of it (testdata/browser/portal.mjs). It saves the
// screenshot the README shows. A missing browser fails the test: only -short skips it.
func TestPortalInBrowser(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("browser test: needs chromium, node and playwright-core (run without -short)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: run scripts/services.sh (make test does): %v", err)
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing: run scripts/services.sh (make test does): %v", chromiumPath, err)
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatalf("playwright-core is not installed in %s: run scripts/services.sh (make test does): %v", browserDir, err)
	}

	ladder := retry.Ladder{50 * time.Millisecond}
	b := newAPIBed(t, ladder)
	rc := testbed.NewReceiver(t)
	var failing atomic.Bool
	failing.Store(true)
	rc.Respond(func(r *http.Request, _ int) (int, http.Header) {
		if failing.Load() && r.URL.Path == "/orders" {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})
	one := b.AddWebhook(testbed.Webhook{Account: 1, Event: "ORDER.PAID", URL: rc.URL + "/orders"})
	b.AddWebhook(testbed.Webhook{Account: 1, Event: "ORDER.REFUNDED", URL: rc.URL + "/refunds", Format: "xml"})
	b.AddWebhook(testbed.Webhook{Account: 2, Event: "ORDER.PAID", URL: rc.URL + "/account-two"})
	b.StartWorker(testbed.WorkerOptions{Ladder: ladder})
	b.PublishEvent("ORDER.PAID", testbed.Event("order-1001-paid", "ORDER.PAID", 1, `"objectId":1001,"data":{"order":1001,"total":"49.90"}`))
	b.PublishEvent("ORDER.PAID", testbed.Event("order-2001-paid", "ORDER.PAID", 2, `"objectId":2001,"data":{"order":2001}`))
	b.PublishEvent("ORDER.REFUNDED", testbed.Event("order-0999-refunded", "ORDER.REFUNDED", 1, `"objectId":999,"data":{"order":999}`))
	id := repository.DeliveryID("order-1001-paid", one)
	testbed.Eventually(t, wait, "the delivery to fail twice", func() bool { s, n := b.status(t, id); return s == "failed" && n == 2 })
	rc.Wait(t, "/account-two", 1, wait)
	rc.Wait(t, "/refunds", 1, wait)
	testbed.Eventually(t, wait, "every delivery recorded", func() bool {
		return b.Count("SELECT COUNT(*) FROM deliveries WHERE status <> 'pending'") == 3
	})
	failing.Store(false)

	link := func(account uint64) string { return b.url + "/portal/#token=" + token(t, account, "read write") }
	if err := os.MkdirAll(filepath.Dir(screenshot), 0o755); err != nil {
		t.Fatal(err)
	}
	shot, _ := filepath.Abs(screenshot)
	failure := filepath.Join(os.TempDir(), "webhookd-portal-failure.png")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "portal.mjs", link(1), link(2), shot)
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "FAILURE_SCREENSHOT="+failure)
	out, err := cmd.CombinedOutput()
	t.Logf("portal.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the browser run failed (%v); a screenshot may be in %s", err, failure)
	}

	// What the page showed is what happened.
	if s, n := b.status(t, id); s != "succeeded" || n != 3 {
		t.Errorf("after Retry in the page: %s after %d attempts, want succeeded after 3", s, n)
	}
	reqs := rc.Requests("/orders")
	if len(reqs) != 3 || reqs[2].Header.Get("X-Webhook-Attempt") != "3" {
		t.Errorf("the receiver got %d requests, want the third as attempt 3", len(reqs))
	}
}
