package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/webhookd/webhookd/config"
	"github.com/webhookd/webhookd/sender"
	"github.com/webhookd/webhookd/signer"
)

// runReceive is a debugging receiver: it prints each webhook it gets and whether both
// signatures verify under --token.
func runReceive(ctx context.Context, _ config.Config, args []string, out io.Writer) error {
	fs := newFlags("receive")
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	token := fs.String("token", "", "webhook token to verify signatures with")
	status := fs.Int("status", http.StatusOK, "status to answer with")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	fmt.Fprintf(out, "listening on http://%s/\n", ln.Addr())
	var mu sync.Mutex
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 10<<20))
			mu.Lock()
			defer mu.Unlock()
			printWebhook(out, r, body, *token)
			w.WriteHeader(*status)
		}),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func printWebhook(w io.Writer, r *http.Request, body []byte, token string) {
	fmt.Fprintf(w, "--- %s %s %s\n", time.Now().Format(time.RFC3339), r.Method, r.URL.Path)
	for _, h := range sender.RequestHeaders {
		fmt.Fprintf(w, "%s: %s\n", h, r.Header.Get(h))
	}
	fmt.Fprintf(w, "\n%s\n", body)
	if token == "" {
		fmt.Fprintln(w, "signatures: not checked (no --token)")
		return
	}
	fmt.Fprintf(w, "%s: %s\n", sender.HeaderSignature, verdictText(signer.Verify(token, body, r.Header.Get(sender.HeaderSignature))))
	ts, err := strconv.ParseInt(r.Header.Get(sender.HeaderStandardTimestamp), 10, 64)
	ok := err == nil && signer.VerifyStandard(token, r.Header.Get(sender.HeaderStandardID), ts, body, r.Header.Get(sender.HeaderStandardSignature))
	if ok {
		if age := time.Since(time.Unix(ts, 0)); age > 5*time.Minute || age < -5*time.Minute {
			fmt.Fprintf(w, "webhook-signature: valid, but timestamp is %v off\n", age.Round(time.Second))
			return
		}
	}
	fmt.Fprintf(w, "webhook-signature: %s\n", verdictText(ok))
}

func verdictText(ok bool) string {
	if ok {
		return "valid"
	}
	return "INVALID"
}
