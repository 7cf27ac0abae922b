package httpapi

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weaseldb/weaseldb/engine"
	"github.com/weaseldb/weaseldb/netpoll"
)

// Metrics is the server's Prometheus registry. Counters and gauges that the
// engine and netpoll already keep are read at scrape time by a collector
// (nothing on the hot path); distributions are histograms fed by the engine
// Observer and the commit done callback.
type Metrics struct {
	Registry *prometheus.Registry

	commitLatency  *prometheus.HistogramVec
	commitLatByOut [engine.Deposed + 1]prometheus.Observer
	resolveBatch   prometheus.Histogram
	segmentTxns    prometheus.Histogram
	segmentBytes   prometheus.Histogram
	segmentSeconds prometheus.Histogram
	requests       *prometheus.CounterVec
	// requestCells caches requests' children by route and status code
	// (100..599): each series is created on its first answer, so a scrape
	// shows only what happened, and counting after that is one atomic load
	// and an add.
	requestCells [routeCount][statusCodeSpan]atomic.Pointer[counterCell]

	// subscribersDropped counts streams netpoll closed because their peer
	// stopped reading (write_stall_timeout).
	subscribersDropped atomic.Uint64

	api      *API
	netStats func() netpoll.Stats
	failover atomic.Pointer[func() FailoverStatus]
}

// FailoverStatus is what /metrics reports about a server whose log is
// shared (S3): its role and the lease as it sees them.
type FailoverStatus struct {
	Role     string // "leader" or "replica"
	LeaderID string // the leader term it serves or follows
	// LeaseAge is, on a leader, the time since its last successful
	// renewal; on a replica, since it last saw the lease change.
	LeaseAge    time.Duration
	LagVersions uint64  // replica: versions it was behind at its last poll
	LagSeconds  float64 // replica: since it last found nothing new in the log
	Takeovers   uint64  // replica promotions to leader
	StepDowns   uint64  // leaders that lost the log and became replicas
}

// SetFailover gives the metrics the node's status (S3 backends).
func (m *Metrics) SetFailover(f func() FailoverStatus) { m.failover.Store(&f) }

// statusCodeSpan is how many status codes requestCells covers (100..599).
const statusCodeSpan = 500

type counterCell struct{ c prometheus.Counter }

// NewMetrics builds the registry with the Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	reg := m.Registry
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.commitLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "weaseldb_commit_latency_seconds",
		Help:    "Time from receiving a commit's head to handing its answer to the connection, by outcome.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18), // 50µs .. ~6.5s
	}, []string{"outcome"})
	for o := engine.Committed; o <= engine.Deposed; o++ {
		m.commitLatByOut[o] = m.commitLatency.WithLabelValues(o.String())
	}
	m.resolveBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "weaseldb_resolve_batch_size", Help: "Commits resolved per batch of the resolve stage.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 16),
	})
	m.segmentTxns = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "weaseldb_persist_batch_transactions", Help: "Transactions per persisted segment.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 16),
	})
	m.segmentBytes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "weaseldb_persist_batch_bytes", Help: "Bytes per persisted segment.",
		Buckets: prometheus.ExponentialBuckets(256, 4, 10),
	})
	m.segmentSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "weaseldb_persist_latency_seconds", Help: "Time a segment write took to become durable (Log.Append).",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
	})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weaseldb_http_requests_total",
		Help: "Requests answered by the API's routes, by route and status code; a series appears with its first answer. Answers netpoll sends itself (404, 405, 431, 503 over max_connections) are in weaseldb_http_responses_by_class_total.",
	}, []string{"route", "code"})
	reg.MustRegister(m.commitLatency, m.resolveBatch, m.segmentTxns, m.segmentBytes, m.segmentSeconds, m.requests)
	return m
}

// SetBuildInfo registers weaseldb_build_info{version,revision,goversion} 1,
// the Prometheus convention for "which build is this".
func (m *Metrics) SetBuildInfo(version, revision, goVersion string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "weaseldb_build_info",
		Help:        "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion},
	})
	g.Set(1)
	m.Registry.MustRegister(g)
}

// attach connects the metrics to the API (engine stats, subscribers).
func (m *Metrics) attach(a *API) {
	m.api = a
	m.Registry.MustRegister(&statsCollector{m: m})
}

// SetNetStats gives the metrics the server's connection counters.
func (m *Metrics) SetNetStats(f func() netpoll.Stats) { m.netStats = f }

// Observer returns the engine observer that feeds the batch histograms.
func (m *Metrics) Observer() engine.Observer { return observer{m} }

type observer struct{ m *Metrics }

func (o observer) ResolveBatch(n int) { o.m.resolveBatch.Observe(float64(n)) }
func (o observer) SegmentWritten(txns, bytes int, nanos int64) {
	o.m.segmentTxns.Observe(float64(txns))
	o.m.segmentBytes.Observe(float64(bytes))
	o.m.segmentSeconds.Observe(float64(nanos) / 1e9)
}

func (m *Metrics) countResponse(r routeID, status int) {
	if status < 100 || status >= 100+statusCodeSpan {
		m.requests.WithLabelValues(routeNames[r], strconv.Itoa(status)).Inc() // never happens: no cache
		return
	}
	p := &m.requestCells[r][status-100]
	cell := p.Load()
	if cell == nil {
		// Racing first answers build equal cells: WithLabelValues returns
		// the same child to both.
		cell = &counterCell{m.requests.WithLabelValues(routeNames[r], strconv.Itoa(status))}
		p.Store(cell)
	}
	cell.c.Inc()
}

func (m *Metrics) observeCommit(r *engine.Request, status int) {
	m.countResponse(routeCommit, status)
	if r.Outcome <= engine.Deposed && m.commitLatByOut[r.Outcome] != nil {
		m.commitLatByOut[r.Outcome].Observe(float64(time.Now().UnixNano()-r.ReceivedAt) / 1e9)
	}
}

// metricsHandler serves the registry (text or OpenMetrics by Accept).
func (a *API) metricsHandler() netpoll.Handler {
	h := promhttp.HandlerFor(a.met.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
	return netpoll.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.met.countResponse(routeMetrics, 200)
		h.ServeHTTP(w, r)
	}))
}

// statsCollector turns engine, netpoll and subscriber state into metrics at
// scrape time.
type statsCollector struct{ m *Metrics }

var (
	descCommits            = prometheus.NewDesc("weaseldb_commits_total", "Commit requests answered, by outcome (committed, conflict, too_old, leader_changed, future_version, invalid, unavailable, deposed).", []string{"outcome"}, nil)
	descDuplicates         = prometheus.NewDesc("weaseldb_commit_duplicates_total", "Commits answered from an earlier commit with the same request_id.", nil, nil)
	descSegments           = prometheus.NewDesc("weaseldb_persist_segment_writes_total", "Segments made durable.", nil, nil)
	descSegmentErrors      = prometheus.NewDesc("weaseldb_persist_segment_errors_total", "Failed segment writes (retried).", nil, nil)
	descSegmentTxns        = prometheus.NewDesc("weaseldb_persist_transactions_total", "Transactions made durable.", nil, nil)
	descSegmentBytes       = prometheus.NewDesc("weaseldb_persist_bytes_total", "Segment bytes made durable.", nil, nil)
	descInFlight           = prometheus.NewDesc("weaseldb_persist_in_flight_segments", "Segment writes outstanding.", nil, nil)
	descQueued             = prometheus.NewDesc("weaseldb_commit_queued", "Commits submitted and not yet answered.", nil, nil)
	descConflictKeys       = prometheus.NewDesc("weaseldb_conflict_set_keys", "Entries in the conflict set.", nil, nil)
	descConflictBytes      = prometheus.NewDesc("weaseldb_conflict_set_bytes", "Memory of the conflict set.", nil, nil)
	descStatusEntries      = prometheus.NewDesc("weaseldb_status_index_entries", "Request ids of the status window held in memory.", nil, nil)
	descStatusRuns         = prometheus.NewDesc("weaseldb_status_index_runs", "On-disk runs of the status index (beside the log).", nil, nil)
	descStatusDiskIDs      = prometheus.NewDesc("weaseldb_status_index_disk_entries", "Request ids held in the on-disk runs of the status index.", nil, nil)
	descStatusRunMem       = prometheus.NewDesc("weaseldb_status_index_run_memory_bytes", "Memory of the on-disk runs' filters and fences.", nil, nil)
	descTailBytes          = prometheus.NewDesc("weaseldb_subscribe_tail_bytes", "Bytes of recent segments held for subscribers.", nil, nil)
	descVersion            = prometheus.NewDesc("weaseldb_log_version", "Latest log position (transaction version), by kind: durable (committed) and resolved (assigned, maybe not durable yet).", []string{"kind"}, nil)
	descOldest             = prometheus.NewDesc("weaseldb_retention_oldest_retained_version", "Every version above it is still stored.", nil, nil)
	descPolicies           = prometheus.NewDesc("weaseldb_retention_policies", "Retention policies.", nil, nil)
	descPersistFailing     = prometheus.NewDesc("weaseldb_persist_failing", "1 while segment writes fail.", nil, nil)
	descDeposed            = prometheus.NewDesc("weaseldb_deposed", "1 once another leader fenced this one.", nil, nil)
	descPersistDamaged     = prometheus.NewDesc("weaseldb_persist_damaged", "1 once a log file was found deleted, cut or replaced under the server: commits are refused and a restart refuses until an operator acts.", nil, nil)
	descSubscribers        = prometheus.NewDesc("weaseldb_subscribers", "Open /v1/subscribe streams.", nil, nil)
	descSubLagVersions     = prometheus.NewDesc("weaseldb_subscriber_lag_versions", "Distribution over open subscribers, at scrape time, of the versions between the durable version and what each has been sent.", nil, nil)
	descSubLagSeconds      = prometheus.NewDesc("weaseldb_subscriber_lag_seconds", "Distribution over open subscribers, at scrape time, of how long each has been behind: seconds since it last held every transaction available to it (0 when it holds them all).", nil, nil)
	descSubLagVerMax       = prometheus.NewDesc("weaseldb_subscriber_lag_versions_max", "The largest weaseldb_subscriber_lag_versions now.", nil, nil)
	descSubLagSecMax       = prometheus.NewDesc("weaseldb_subscriber_lag_seconds_max", "The largest weaseldb_subscriber_lag_seconds now.", nil, nil)
	descSubDropped         = prometheus.NewDesc("weaseldb_subscribers_dropped_total", "Subscribers disconnected because they stopped reading for server.write_stall_timeout.", nil, nil)
	descTruncations        = prometheus.NewDesc("weaseldb_retention_truncations_total", "Truncation runs that removed segments from the log.", nil, nil)
	descTruncatedVers      = prometheus.NewDesc("weaseldb_retention_truncated_versions_total", "Versions removed from the log by truncation (oldest_retained_version moved up by this much in total).", nil, nil)
	descConflictShrink     = prometheus.NewDesc("weaseldb_conflict_set_shrinks_total", "Times the conflict set reached commit.conflict_set_bytes and its oldest version advanced early.", nil, nil)
	descBodyBytes          = prometheus.NewDesc("weaseldb_http_body_bytes_reading", "Bytes reserved by request bodies being read, all connections (bounded by server.total_body_bytes).", nil, nil)
	descSubBufBytes        = prometheus.NewDesc("weaseldb_subscriber_buffer_bytes", "Bytes held in subscriber stream buffers, all subscribers (bounded by subscribe.total_buffer_bytes).", nil, nil)
	descConnections        = prometheus.NewDesc("weaseldb_http_connections", "Open client connections.", nil, nil)
	descAccepted           = prometheus.NewDesc("weaseldb_http_connections_accepted_total", "Client connections accepted.", nil, nil)
	descRejected           = prometheus.NewDesc("weaseldb_http_connections_rejected_total", "Connections refused with 503 over max_connections.", nil, nil)
	descRequests           = prometheus.NewDesc("weaseldb_http_request_heads_total", "Request heads received (every request netpoll parsed, routed or not).", nil, nil)
	descRole               = prometheus.NewDesc("weaseldb_role", "1 for this server's role on a shared (S3) log, by role; leader_id is the term it serves or follows.", []string{"role", "leader_id"}, nil)
	descLeaseAge           = prometheus.NewDesc("weaseldb_lease_age_seconds", "Leader: since its last successful lease renewal. Replica: since it last saw the lease change.", nil, nil)
	descReplicaLagVersions = prometheus.NewDesc("weaseldb_replica_lag_versions", "Replica: versions it was behind the stored log at its last poll.", nil, nil)
	descReplicaLagSeconds  = prometheus.NewDesc("weaseldb_replica_lag_seconds", "Replica: seconds since it last found the log fully read.", nil, nil)
	descTakeovers          = prometheus.NewDesc("weaseldb_takeovers_total", "Times this server took over as leader from a replica.", nil, nil)
	descStepDowns          = prometheus.NewDesc("weaseldb_step_downs_total", "Times this server lost the log as leader and became a replica.", nil, nil)
	descByClass            = prometheus.NewDesc("weaseldb_http_responses_by_class_total", "Responses by status class, including those netpoll sends itself.", []string{"class"}, nil)
)

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.m.api
	eng := a.engine()
	if eng == nil {
		return
	}
	st := eng.Stats()
	for o := engine.Committed; o <= engine.Deposed; o++ {
		ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(st.OutcomesTotal[o]), o.String())
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(descDuplicates, st.DuplicatesTotal)
	counter(descSegments, st.SegmentsTotal)
	counter(descConflictShrink, st.ConflictShrinksTotal)
	counter(descSegmentErrors, st.SegmentErrorsTotal)
	counter(descSegmentTxns, st.SegmentTxnsTotal)
	counter(descSegmentBytes, st.SegmentBytesTotal)
	gauge(descInFlight, float64(st.InFlightSegments))
	gauge(descQueued, float64(st.Queued))
	gauge(descConflictKeys, float64(st.ConflictSetKeys))
	gauge(descConflictBytes, float64(st.ConflictSetBytes))
	gauge(descStatusEntries, float64(st.StatusIndexEntries))
	gauge(descStatusRuns, float64(st.StatusRuns))
	gauge(descStatusDiskIDs, float64(st.StatusDiskEntries))
	gauge(descStatusRunMem, float64(st.StatusRunMemoryBytes))
	gauge(descTailBytes, float64(st.TailBytes))
	gauge(descVersion, float64(st.DurableVersion), "durable")
	gauge(descVersion, float64(st.ResolvedVersion), "resolved")
	gauge(descOldest, float64(st.OldestRetained))
	gauge(descPolicies, float64(len(eng.Policies())))
	gauge(descPersistFailing, b2f(st.PersistenceFailing))
	gauge(descDeposed, b2f(st.Deposed))
	gauge(descPersistDamaged, b2f(st.PersistenceDamage != ""))

	a.subs.Lock()
	n := len(a.subs.set)
	now := time.Now().UnixNano()
	var lagV, lagS lagHistogram
	lagV.init(lagVersionBuckets)
	lagS.init(lagSecondBuckets)
	for s := range a.subs.set {
		var versions, seconds float64
		if cur := s.cursorAt.Load(); uint64(st.DurableVersion) > cur {
			versions = float64(uint64(st.DurableVersion) - cur)
			seconds = max(0, float64(now-s.caughtUpAt.Load())/1e9) // 0 if it caught up after now was read
		}
		lagV.observe(versions)
		lagS.observe(seconds)
	}
	a.subs.Unlock()
	gauge(descSubscribers, float64(n))
	ch <- lagV.metric(descSubLagVersions)
	ch <- lagS.metric(descSubLagSeconds)
	gauge(descSubLagVerMax, lagV.max)
	gauge(descSubLagSecMax, lagS.max)
	counter(descSubDropped, c.m.subscribersDropped.Load())
	counter(descTruncations, st.TruncationsTotal)
	counter(descTruncatedVers, st.TruncatedVersionsTotal)

	if f := c.m.failover.Load(); f != nil {
		fs := (*f)()
		for _, r := range [...]string{"leader", "replica"} {
			gauge(descRole, b2f(fs.Role == r), r, fs.LeaderID)
		}
		gauge(descLeaseAge, fs.LeaseAge.Seconds())
		gauge(descReplicaLagVersions, float64(fs.LagVersions))
		gauge(descReplicaLagSeconds, fs.LagSeconds)
		counter(descTakeovers, fs.Takeovers)
		counter(descStepDowns, fs.StepDowns)
	}

	if c.m.netStats != nil {
		ns := c.m.netStats()
		gauge(descConnections, float64(ns.OpenConnections))
		gauge(descSubBufBytes, float64(ns.StreamBytes))
		gauge(descBodyBytes, float64(ns.BodyBytes))
		counter(descAccepted, ns.Accepted)
		counter(descRejected, ns.Rejected)
		counter(descRequests, ns.Requests)
		for class := 1; class < len(ns.Responses); class++ {
			ch <- prometheus.MustNewConstMetric(descByClass, prometheus.CounterValue, float64(ns.Responses[class]), strconv.Itoa(class)+"xx")
		}
	}
}

// Bucket bounds of the subscriber lag histograms.
var (
	lagVersionBuckets = prometheus.ExponentialBuckets(1, 10, 9)    // 1 .. 100M versions
	lagSecondBuckets  = []float64{0.01, 0.1, 1, 10, 60, 600, 3600} // 10ms .. 1h
)

// lagHistogram gathers one scrape's distribution of subscriber lags.
type lagHistogram struct {
	bounds   []float64
	counts   []uint64 // per bucket, not cumulative
	n        uint64
	sum, max float64
}

func (h *lagHistogram) init(bounds []float64) {
	h.bounds, h.counts = bounds, make([]uint64, len(bounds))
}

func (h *lagHistogram) observe(v float64) {
	h.n++
	h.sum += v
	h.max = max(h.max, v)
	for i, b := range h.bounds {
		if v <= b {
			h.counts[i]++
			return
		}
	}
}

func (h *lagHistogram) metric(d *prometheus.Desc) prometheus.Metric {
	cum := make(map[float64]uint64, len(h.bounds))
	var c uint64
	for i, b := range h.bounds {
		c += h.counts[i]
		cum[b] = c
	}
	return prometheus.MustNewConstHistogram(d, h.n, h.sum, cum)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
