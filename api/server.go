// Package api serves the delivery API and the portal of contract §10: an account's webhooks,
// deliveries and events, read from the delivery log and acted on through redelivery
// messages, for the monolith's customers and support staff.
//
// Every request to /v1 carries an HS256 JWT naming its account; every query is scoped by that
// account in SQL, so another account's ids answer 404 as unknown ones do. Webhooks' signing
// tokens never leave the database through it. /openapi.json, embedded, is the one
// description of the routes: the router is built from the same table a test holds it to.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/webhookd/webhookd/redeliver"
	"github.com/webhookd/webhookd/repository"
)

// Limits of a request. The write timeout is the time an answer may take to start and be
// written; a bulk retry moves it on after each batch it publishes.
const (
	maxBodyBytes      = 64 << 10
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 10 * time.Second
)

// Options configure a Server.
type Options struct {
	// Secret is the HS256 key of the tokens (WEBHOOKD_API_SECRET). Required.
	Secret []byte
	// Queue is the work queue that redelivery messages go to (WEBHOOKD_QUEUE). Required.
	Queue string
	// UserAgent is the User-Agent of a rendered attempt, webhookd/<version>, as the
	// worker sends it. Defaults to "webhookd".
	UserAgent string
	// Log receives errors the caller is not told the details of. Defaults to discarding.
	Log *slog.Logger
	// Now is the clock of token expiry, the 24 h stats and requests not attempted yet.
	// Defaults to time.Now.
	Now func() time.Time
}

// Server answers the API's requests.
type Server struct {
	opts  Options
	store *repository.Store
	pub   redeliver.Publisher
	// retryBatch is how many deliveries a bulk retry reads and publishes at a time.
	retryBatch int
}

// New makes a Server reading and writing through store and publishing redeliveries with pub.
func New(opts Options, store *repository.Store, pub redeliver.Publisher) (*Server, error) {
	if len(opts.Secret) == 0 {
		return nil, errors.New("api: no secret")
	}
	if opts.Queue == "" {
		return nil, errors.New("api: no queue")
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "webhookd"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{opts: opts, store: store, pub: pub, retryBatch: 500}, nil
}

// route is one operation of the API. The router and the test against /openapi.json are made
// from the same table, so that neither can have a route the other lacks.
type route struct {
	method, path string
	// scope is what the token must grant, scopeRead or scopeWrite; public routes have none.
	scope string
	// call serves a route of the API proper; public serves the others.
	call   handler
	public http.Handler
}

// handler serves one API call for account; an error becomes the answer (see fail).
type handler func(w http.ResponseWriter, r *http.Request, account uint64) error

func (s *Server) routes() []route {
	return []route{
		{method: "GET", path: "/v1/webhooks", scope: scopeRead, call: s.listWebhooks},
		{method: "GET", path: "/v1/webhooks/{id}", scope: scopeRead, call: s.getWebhook},
		{method: "POST", path: "/v1/webhooks/{id}/enable", scope: scopeWrite, call: s.enableWebhook},
		{method: "GET", path: "/v1/deliveries", scope: scopeRead, call: s.listDeliveries},
		{method: "GET", path: "/v1/deliveries/{id}", scope: scopeRead, call: s.getDelivery},
		{method: "POST", path: "/v1/deliveries/{id}/retry", scope: scopeWrite, call: s.retryDelivery},
		{method: "POST", path: "/v1/deliveries/retry", scope: scopeWrite, call: s.retryDeliveries},
		{method: "GET", path: "/v1/events", scope: scopeRead, call: s.listEvents},
		{method: "GET", path: "/v1/events/{id}", scope: scopeRead, call: s.getEvent},
		{method: "GET", path: "/openapi.json", public: http.HandlerFunc(serveOpenAPI)},
		{method: "GET", path: "/portal/", public: portalHandler()},
	}
}

// Handler routes every request of the API. Request bodies are cut at 64 KiB.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		h := rt.public
		if h == nil {
			h = s.authorized(rt.scope, rt.call)
		}
		mux.Handle(rt.method+" "+rt.path, h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		mux.ServeHTTP(w, r)
	})
}

// authorized checks the request's token and scope, then calls h with the token's account.
func (s *Server) authorized(scope string, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		c, err := s.authenticate(r)
		if err == nil && !c.has(scope) {
			err = &httpError{http.StatusForbidden, "token lacks the " + scope + " scope"}
		}
		if err == nil {
			err = h(w, r, c.account)
		}
		if err != nil {
			s.fail(w, r, err)
		}
	})
}

// httpServer is the server of Serve: every timeout set, so that a slow or idle client
// holds a connection for a bounded time.
func (s *Server) httpServer(ctx context.Context) *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.opts.Log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
}

// Serve answers on ln until ctx ends, then lets requests in progress finish for a while.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := s.httpServer(ctx)
	// stop also ends the shutdown goroutine when Serve fails on its own.
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-stop.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	cancel()
	<-done
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve api: %w", err)
	}
	return nil
}
