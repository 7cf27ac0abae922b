// Package httpapi is WeaselDB's HTTP contract (API.md) on top of netpoll:
// it routes requests, streams commit bodies into jsonstream, hands commits
// to the engine with the connection detached, answers them when the engine
// is done, serves Server-Sent Events from the engine's tail and the persisted
// log, and exposes /metrics, /healthz and /readyz.
//
// # Using it
//
//  1. a := httpapi.New(cfg, eng, log, opts) once the engine is open.
//  2. router, _ := netpoll.NewRouter(a.Routes()); srv, _ := netpoll.NewServer(...)
//  3. a.SetNetStats(srv.Stats) so /metrics can report connections.
//  4. a.SetReady(true) once the server listens; a.Shutdown() closes streams.
//
// Decisions where API.md is silent are recorded in docs/api.md.
package httpapi

import (
	"bytes"
	"crypto/subtle"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/weaseldb/weaseldb/config"
	"github.com/weaseldb/weaseldb/engine"
	"github.com/weaseldb/weaseldb/jsonstream"
	"github.com/weaseldb/weaseldb/netpoll"
	"github.com/weaseldb/weaseldb/persist"
)

// Options are the parts of the server the API needs besides the engine.
type Options struct {
	// AuthToken, when non-empty, is required as "Authorization: Bearer
	// <token>" on every /v1/ route and /metrics, reads too (a subscription
	// streams the whole log); /healthz and /readyz stay open.
	AuthToken string
	// Logger receives rare events (never one per request).
	Logger *slog.Logger
	// Metrics is the registry to use; nil builds a new one. The caller may
	// have registered backend collectors (S3 operations) on it.
	Metrics *Metrics
}

// API serves API.md. Create it with New.
type API struct {
	cfg config.Config
	// eng is the current engine: nil while the server starts, swapped when
	// the server's role changes (a deposed leader becomes a replica).
	eng atomic.Pointer[engine.Engine]
	// commitSlotsKept bounds the free commit slots a connection keeps: the
	// most commits netpoll lets it have detached at once
	// (server.max_pipelined_commits) plus the one being read.
	commitSlotsKept int
	log             persist.Log
	opts            Options
	logger          *slog.Logger
	limits          jsonstream.Limits
	met             *Metrics
	// leaderURL is the advertised URL of the leader a replica knows of;
	// leaderIDHint its term's id from the lease (used until the replica
	// has read one of its segments).
	leaderURL    atomic.Pointer[string]
	leaderIDHint atomic.Pointer[string]

	// streamPieceBytes bounds one Stream.Write: half the stream queue.
	streamPieceBytes int

	// events is the shared SSE encoding of recent segments.
	events *eventCache
	// catchUpSlots bounds the subscribers reading the persisted log at once,
	// workSlots those encoding and copying into their streams.
	catchUpSlots chan struct{}
	workSlots    chan struct{}

	ready atomic.Bool

	subs struct {
		sync.Mutex
		closed bool
		set    map[*subscriber]struct{}
	}
	subsWG sync.WaitGroup
}

// New builds the API over an engine and its log. eng may be nil while the
// server starts (SetEngine later): until then the API answers 503.
func New(cfg config.Config, eng *engine.Engine, log persist.Log, opts Options) *API {
	a := &API{cfg: cfg, log: log, opts: opts}
	a.eng.Store(eng)
	empty := ""
	a.leaderURL.Store(&empty)
	a.leaderIDHint.Store(&empty)
	a.commitSlotsKept = netpoll.DetachedPerConn(cfg.Server.MaxPipelinedCommits) + 1
	a.logger = opts.Logger
	if a.logger == nil {
		a.logger = slog.Default()
	}
	a.limits = jsonstream.Limits{
		MaxBodyBytes:     cfg.Server.MaxBodyBytes,
		MaxKeyBytes:      cfg.Server.MaxKeyBytes,
		MaxValueBytes:    cfg.Server.MaxValueBytes,
		MaxPreconditions: cfg.Server.MaxPreconditions,
		MaxOperations:    cfg.Server.MaxOperations,
	}.WithDefaults()
	a.met = opts.Metrics
	if a.met == nil {
		a.met = NewMetrics()
	}
	a.met.attach(a)
	a.subs.set = make(map[*subscriber]struct{})
	a.events = newEventCache(eventCacheBytes)
	a.streamPieceBytes = max(StreamQueueBytes(cfg)/2, 4<<10)
	a.catchUpSlots = make(chan struct{}, catchUpSlots)
	a.workSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))
	return a
}

// Metrics returns the API's metrics (its Prometheus registry and the
// engine observer).
func (a *API) Metrics() *Metrics { return a.met }

// SetEngine makes eng the engine the API serves (a new role's engine).
// Streams on the previous engine end with its tail; clients resume with
// Last-Event-ID.
func (a *API) SetEngine(eng *engine.Engine) { a.eng.Store(eng) }

// engine returns the current engine, nil while the server starts.
func (a *API) engine() *engine.Engine { return a.eng.Load() }

// SetLeader records the advertised URL of the current leader and its
// term's id (from the lease), where a replica redirects commits; "" when
// none is known.
func (a *API) SetLeader(url, leaderID string) {
	a.leaderURL.Store(&url)
	a.leaderIDHint.Store(&leaderID)
}

// leaderIDFor returns the leader id to report for eng: its own (a leader's
// term, or the term a replica follows), else the lease's.
func (a *API) leaderIDFor(eng *engine.Engine) []byte {
	if id := eng.LeaderID(); id != "" || !eng.IsReplica() {
		return []byte(id)
	}
	return []byte(*a.leaderIDHint.Load())
}

// LeaderURL returns what SetLeaderURL recorded.
func (a *API) LeaderURL() string { return *a.leaderURL.Load() }

// leaderEngine returns the engine if this server leads. Otherwise it
// answers the request itself, as API.md says for a replica: 307 to the
// same path on the leader, or 503 when no leader is known or the server is
// starting; and returns nil.
func (a *API) leaderEngine(ex *netpoll.Exchange, route routeID) *engine.Engine {
	eng := a.engine()
	if eng == nil {
		a.respondError(ex, route, 503, "unavailable", "starting: the log is being recovered")
		return nil
	}
	if !eng.IsReplica() {
		return eng
	}
	leader := a.LeaderURL()
	if leader == "" {
		a.respondError(ex, route, 503, "unavailable", "this server is a replica and knows of no leader yet; retry shortly")
		return nil
	}
	// The same path and query on the leader (not Target: an absolute-form
	// target names this server).
	req := ex.Request()
	loc := append([]byte(leader), req.Path()...)
	if q := req.RawQuery(); len(q) > 0 {
		loc = append(append(loc, '?'), q...)
	}
	b := jsonstream.AppendError(ex.Scratch(), "not_leader", []byte("this server is a replica; send this request to the leader at "+leader))
	b = appendField(b[:len(b)-1], "leader_url")
	b = jsonstream.AppendString(b, []byte(leader))
	b = append(b, '}')
	ex.SetScratch(b)
	a.respond(ex, route, 307, b, netpoll.Header{Name: "Location", Value: loc})
	return nil
}

// SetReady marks the server ready (/readyz 200) or not.
func (a *API) SetReady(ok bool) { a.ready.Store(ok) }

// Routes returns the route table of API.md.
func (a *API) Routes() []netpoll.Route {
	small := int64(64 << 10) // bodies of retention PUTs and body-less GETs
	g := func(route routeID, params []string, fn func(*netpoll.Exchange, []byte)) netpoll.Handler {
		return &guardedHandler{api: a, route: route, params: params, inner: netpoll.Buffered(fn)}
	}
	open := func(fn func(*netpoll.Exchange, []byte)) netpoll.Handler {
		return &guardedHandler{api: a, route: routeHealth, open: true, inner: netpoll.Buffered(fn)}
	}
	r := []netpoll.Route{
		{Method: "GET", Path: "/v1/version", Handler: g(routeVersion, paramsNone, a.serveVersion), MaxBodyBytes: small},
		{Method: "POST", Path: "/v1/commit", Handler: &commitHandler{api: a}, MaxBodyBytes: int64(a.limits.MaxBodyBytes)},
		{Method: "GET", Path: "/v1/status", Handler: g(routeStatus, paramsStatus, a.serveStatus), MaxBodyBytes: small},
		{Method: "GET", Path: "/v1/subscribe", Handler: g(routeSubscribe, paramsSubscribe, a.serveSubscribe), MaxBodyBytes: small},
		{Method: "GET", Path: "/v1/retention", Handler: g(routeRetention, paramsNone, a.serveRetentionList), MaxBodyBytes: small},
		{Method: "GET", Path: "/v1/retention/", Handler: g(routeRetention, paramsNone, a.serveRetentionList), MaxBodyBytes: small},
		{Method: "GET", Path: "/v1/retention/{id}", Handler: g(routeRetention, paramsNone, a.serveRetentionGet), MaxBodyBytes: small},
		{Method: "PUT", Path: "/v1/retention/{id}", Handler: g(routeRetention, paramsNone, a.serveRetentionPut), MaxBodyBytes: small},
		{Method: "DELETE", Path: "/v1/retention/{id}", Handler: g(routeRetention, paramsNone, a.serveRetentionDelete), MaxBodyBytes: small},
		{Method: "GET", Path: "/healthz", Handler: open(a.serveHealthz), MaxBodyBytes: small},
		{Method: "GET", Path: "/readyz", Handler: open(a.serveReadyz), MaxBodyBytes: small},
	}
	if a.cfg.Metrics.Enabled {
		r = append(r, netpoll.Route{Method: "GET", Path: "/metrics", Handler: &guardedHandler{api: a, route: routeMetrics, params: paramsNone, inner: a.metricsHandler()}, MaxBodyBytes: small})
	}
	return r
}

// authorized reports whether the request carries the configured token, or
// answers 401 itself and returns false. Every /v1/ route and /metrics ask.
func (a *API) authorized(ex *netpoll.Exchange, route routeID) bool {
	if a.opts.AuthToken == "" {
		return true
	}
	if h, _ := ex.Request().Header("Authorization"); bearerOK(string(h), a.opts.AuthToken) {
		return true
	}
	a.respondError(ex, route, 401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)",
		netpoll.Header{Name: "WWW-Authenticate", Value: []byte(`Bearer realm="weaseldb"`)})
	return false
}

// jsonContentTypeOK reports whether a request with a JSON body may proceed:
// a Content-Type that is absent or application/json (with parameters).
func jsonContentTypeOK(r *netpoll.Request) bool {
	ct, ok := r.Header("Content-Type")
	if !ok {
		return true
	}
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return bytes.EqualFold(bytes.TrimSpace(ct), []byte("application/json"))
}

// catchUpSlots is how many subscribers may read the persisted log at once:
// enough to keep a disk or S3 busy, few enough that a crowd of subscribers
// behind the tail cannot take the CPU, the disk and the memory of their
// read buffers from the commit path.
const catchUpSlots = 2

// Subscribers do their CPU work (encoding events, copying them into stream
// queues) in at most GOMAXPROCS/2 (at least one) at a time: the other half
// of the CPUs stays with the commit pipeline however many subscribers there
// are. One goroutine copies gigabytes a second, so this bounds subscriber
// throughput far above what sockets take.

// eventCacheBytes bounds the shared SSE encoding of recent segments.
const eventCacheBytes = 32 << 20

// StreamQueueBytes is the netpoll stream queue bound that gives each
// subscriber the configured memory budget (netpoll holds up to twice it).
func StreamQueueBytes(cfg config.Config) int { return cfg.Subscribe.BufferBytes / 2 }

// bearerOK checks an Authorization header value against the token in
// constant time.
func bearerOK(header, token string) bool {
	const prefix = "Bearer "
	if len(header) <= len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(header[len(prefix):]), []byte(token)) == 1
}
