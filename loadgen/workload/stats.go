package workload

import (
	"sync"

	"github.com/weaseldb/weaseldb/loadgen/hist"
)

// Outcomes counts answers by kind. For Op "version", OK counts 200s.
type Outcomes struct {
	OK            uint64 `json:"ok"`             // 200: committed (or version answered)
	Duplicate     uint64 `json:"duplicate"`      // 200 with "duplicate": true (also in OK)
	Conflict      uint64 `json:"conflict"`       // 409 reason conflict
	TooOld        uint64 `json:"too_old"`        // 409 reason too_old
	LeaderChanged uint64 `json:"leader_changed"` // 409 reason leader_changed
	Status4xx     uint64 `json:"status_4xx"`     // other 4xx: a loadgen or server bug
	Unavailable   uint64 `json:"unavailable"`    // 503: server could not persist or is overloaded
	Redirected    uint64 `json:"redirected"`     // 307: sent to a replica; the connection moves to the leader
	Status5xx     uint64 `json:"status_5xx"`     // other 5xx
	Transport     uint64 `json:"transport"`      // connection errors, malformed answers, lost in-flight requests
}

// Errors is everything that is neither a commit nor an expected 409.
func (o Outcomes) Errors() uint64 {
	return o.Status4xx + o.Unavailable + o.Status5xx + o.Transport + o.LeaderChanged
}

func (o *Outcomes) add(p Outcomes) {
	o.OK += p.OK
	o.Duplicate += p.Duplicate
	o.Conflict += p.Conflict
	o.TooOld += p.TooOld
	o.LeaderChanged += p.LeaderChanged
	o.Status4xx += p.Status4xx
	o.Unavailable += p.Unavailable
	o.Status5xx += p.Status5xx
	o.Transport += p.Transport
	o.Redirected += p.Redirected
}

// recorder is one goroutine's latencies and outcomes. The owner records under
// mu (uncontended but for the collector's once-a-second swap), so the hot
// path costs an uncontended lock and no allocation.
type recorder struct {
	mu struct {
		sync.Mutex
		lat *hist.Histogram
		out Outcomes
		n   uint64 // extra counter (subscriber events)
	}
}

func newRecorder() *recorder {
	r := &recorder{}
	r.mu.lat = hist.New()
	return r
}

// drainInto moves everything recorded so far into lat and out and resets.
func (r *recorder) drainInto(lat *hist.Histogram, out *Outcomes, n *uint64) {
	r.mu.Lock()
	lat.Merge(r.mu.lat)
	out.add(r.mu.out)
	*n += r.mu.n
	r.mu.lat.Reset()
	r.mu.out = Outcomes{}
	r.mu.n = 0
	r.mu.Unlock()
}

// Quantiles is a latency summary in milliseconds.
type Quantiles struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func quantilesOf(h *hist.Histogram) Quantiles {
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	return Quantiles{
		Count: h.Count(), MeanMs: h.Mean() / 1e6,
		P50Ms: ms(h.Quantile(0.5)), P90Ms: ms(h.Quantile(0.9)), P99Ms: ms(h.Quantile(0.99)),
		P999Ms: ms(h.Quantile(0.999)), MaxMs: ms(h.Max()),
	}
}
