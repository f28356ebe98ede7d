package main

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/webhookd/webhookd/internal/testbed"
)

// otlpReceiver is an OTLP/HTTP trace endpoint in the test process: it keeps every span it
// is sent, with the service.name of its resource.
type otlpReceiver struct {
	mu      sync.Mutex
	spans   []*tracepb.Span
	service map[string]bool
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &req) != nil {
		http.Error(w, "want OTLP/HTTP protobuf traces", http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				o.service[a.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			o.spans = append(o.spans, ss.GetSpans()...)
		}
	}
	o.mu.Unlock()
	b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(b)
}

// TestTracingOverOTLP runs `webhookd run` with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an
// OTLP/HTTP endpoint in the test: the standard variables alone turn tracing on, and the event's
// spans arrive there under the monolith's span, with the service name the environment gives.
func TestTracingOverOTLP(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/hooks"})
	otlp := &otlpReceiver{service: map[string]bool{}}
	collector := httptest.NewServer(otlp)
	t.Cleanup(collector.Close)

	addr := freeAddr(t)
	cmd := exec.Command(binary, "run")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEBHOOKD_") && !strings.HasPrefix(kv, "OTEL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, bedEnv(bed)...)
	cmd.Env = append(cmd.Env, "WEBHOOKD_ADMIN_ADDR="+addr, "WEBHOOKD_ALLOW_PRIVATE_NETWORKS=true",
		"OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_BSP_SCHEDULE_DELAY=50", "OTEL_SERVICE_NAME=webhookd-under-test")
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	testbed.Eventually(t, 30*time.Second, "the worker to be ready", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	bed.Publish(bed.Exchange, "TASK.CREATED", amqp.Publishing{
		ContentType: "application/json",
		Headers:     amqp.Table{"traceparent": "00-" + traceID + "-" + parentID + "-01"},
		Body:        []byte(testbed.Event("otlp", "TASK.CREATED", 1, "")),
	})
	reqs := rc.Wait(t, "/hooks", 1, 20*time.Second)
	if h := reqs[0].Header.Get("traceparent"); h != "" {
		t.Errorf("the receiver got traceparent %q", h)
	}
	byName := map[string]*tracepb.Span{}
	testbed.Eventually(t, 20*time.Second, "the event's spans at the OTLP endpoint", func() bool {
		otlp.mu.Lock()
		defer otlp.mu.Unlock()
		for _, s := range otlp.spans {
			if hex.EncodeToString(s.GetTraceId()) == traceID {
				byName[s.GetName()] = s
			}
		}
		return len(byName) >= 5
	})
	event := byName["process event"]
	if event == nil || hex.EncodeToString(event.GetParentSpanId()) != parentID || event.GetKind() != tracepb.Span_SPAN_KIND_CONSUMER {
		t.Fatalf("no consumer span process event under the monolith's span %s; spans: %v", parentID, byName)
	}
	for _, name := range []string{"claim", "lookup", "attempt", "record"} {
		s := byName[name]
		if s == nil || string(s.GetParentSpanId()) != string(event.GetSpanId()) {
			t.Errorf("no %s span under the event's span; spans: %v", name, byName)
		}
	}
	otlp.mu.Lock()
	service := otlp.service["webhookd-under-test"]
	otlp.mu.Unlock()
	if !service {
		t.Errorf("spans' service.name is not OTEL_SERVICE_NAME's: %v", otlp.service)
	}

	// SIGTERM flushes what is left and exits 0.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("worker exited with %v after SIGTERM", err)
		}
		exited <- err
	case <-time.After(20 * time.Second):
		t.Errorf("worker still running 20s after SIGTERM")
	}
}
