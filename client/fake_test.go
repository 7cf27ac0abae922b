package client

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer implements just enough of the API contract in memory to test
// the client over real sockets: commits with preconditions and request_id
// deduplication, status, subscribe (SSE), retention, and fault injection.
// It is deliberately simple (brute-force conflict checks).
type fakeServer struct {
	srv    *httptest.Server
	leader string

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every commit; guarded by mu
	txns     []fakeTxn     // txns[i].Version == i+1
	oldest   uint64        // oldest retained version
	requests map[string]uint64
	policies map[string]uint64
	tooOld   uint64 // preconditions with version < tooOld answer too_old

	// Fault injection, all guarded by mu.
	dropCommitAnswers int  // commit processed, then the connection is dropped unanswered
	refuse503         int  // commits refused with 503 without processing
	dropCommitsBefore int  // commits dropped unprocessed (connection closed)
	inFlightPolls     int  // status says in_flight this many times first
	statusDown        int  // status requests dropped this many times
	streamDropAfter   int  // close each stream after this many transaction events (0: never)
	streamPartialDrop bool // when dropping, first write half an event
	gapAt             uint64
	retryMS           int
	splitWrites       bool // write events a few bytes at a time

	commitCalls, statusCalls, subscribeCalls int
	lastEventIDs                             []string
}

type fakeTxn struct {
	Version   uint64
	RequestID string
	Ops       []wireOp
}

func newFakeServer(t testing.TB) *fakeServer {
	f := &fakeServer{leader: "leader-1", changed: make(chan struct{}),
		requests: map[string]uint64{}, policies: map[string]uint64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/version", f.version)
	mux.HandleFunc("POST /v1/commit", f.commit)
	mux.HandleFunc("GET /v1/status", f.status)
	mux.HandleFunc("GET /v1/subscribe", f.subscribe)
	mux.HandleFunc("GET /v1/retention/", f.listPolicies)
	mux.HandleFunc("GET /v1/retention/{id}", f.getPolicy)
	mux.HandleFunc("PUT /v1/retention/{id}", f.putPolicy)
	mux.HandleFunc("DELETE /v1/retention/{id}", f.deletePolicy)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) URL() string { return f.srv.URL }

func (f *fakeServer) set(fn func(f *fakeServer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		panic(err) // test helper: cannot fail for these values
	}
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": code, "message": msg})
}

// dropConn closes the client connection without an answer.
func dropConn(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

func (f *fakeServer) last() uint64 { return uint64(len(f.txns)) }

func (f *fakeServer) version(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	v := f.last()
	f.mu.Unlock()
	writeJSON(w, 200, map[string]any{"version": v, "leader_id": f.leader})
}

type wirePre struct {
	Type    string  `json:"type"`
	Key     []byte  `json:"key"`
	Begin   []byte  `json:"begin"`
	End     []byte  `json:"end"`
	Version *uint64 `json:"version"`
}

type wireCommit struct {
	RequestID     string    `json:"request_id"`
	LeaderID      string    `json:"leader_id"`
	ReadVersion   *uint64   `json:"read_version"`
	Preconditions []wirePre `json:"preconditions"`
	Operations    []wireOp  `json:"operations"`
}

// touches reports whether op writes a key in [b, e) (e nil: point b).
func touches(op wireOp, b, e []byte) bool {
	lo, hi := op.Key, []byte(nil)
	if op.Type == OpRangeDelete {
		lo, hi = op.Begin, op.End
	}
	if e == nil { // point read
		if hi == nil {
			return bytes.Equal(lo, b)
		}
		return bytes.Compare(lo, b) <= 0 && bytes.Compare(b, hi) < 0
	}
	if hi == nil {
		return bytes.Compare(b, lo) <= 0 && bytes.Compare(lo, e) < 0
	}
	return bytes.Compare(lo, e) < 0 && bytes.Compare(b, hi) < 0
}

func (f *fakeServer) commit(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var c wireCommit
	if err := dec.Decode(&c); err != nil {
		writeErr(w, 400, "bad_request", "body: "+err.Error())
		return
	}
	f.mu.Lock()
	f.commitCalls++
	if f.dropCommitsBefore > 0 {
		f.dropCommitsBefore--
		f.mu.Unlock()
		dropConn(w)
		return
	}
	if f.refuse503 > 0 {
		f.refuse503--
		f.mu.Unlock()
		writeErr(w, 503, "unavailable", "cannot persist")
		return
	}
	status, answer := f.resolveLocked(&c)
	drop := false
	if f.dropCommitAnswers > 0 {
		f.dropCommitAnswers--
		drop = true
	}
	f.mu.Unlock()
	if drop {
		dropConn(w)
		return
	}
	writeJSON(w, status, answer)
}

func (f *fakeServer) resolveLocked(c *wireCommit) (int, map[string]any) {
	if c.RequestID == "" {
		c.RequestID = NewRequestID()
	}
	if v, ok := f.requests[c.RequestID]; ok {
		return 200, map[string]any{"request_id": c.RequestID, "status": "committed", "version": v, "leader_id": f.leader, "duplicate": true}
	}
	notCommitted := func(reason string, conflicts []int) (int, map[string]any) {
		a := map[string]any{"request_id": c.RequestID, "status": "not_committed", "reason": reason,
			"error": "conflict", "message": reason, "version": f.last(), "leader_id": f.leader}
		if conflicts != nil {
			a["conflicts"] = conflicts
		}
		return 409, a
	}
	if c.LeaderID != "" && c.LeaderID != f.leader {
		return notCommitted("leader_changed", nil)
	}
	var conflicts []int
	for i, p := range c.Preconditions {
		var v uint64
		switch {
		case p.Version != nil:
			v = *p.Version
		case c.ReadVersion != nil:
			v = *c.ReadVersion
		default:
			return 400, map[string]any{"error": "bad_request", "message": fmt.Sprintf("preconditions[%d].version: missing and no read_version", i)}
		}
		if v > f.last() {
			return 400, map[string]any{"error": "bad_request", "reason": "future_version", "message": fmt.Sprintf("preconditions[%d].version: future", i)}
		}
		if v < f.tooOld {
			return notCommitted("too_old", nil)
		}
		b, e := p.Key, []byte(nil)
		if p.Type == "range_read" {
			b, e = p.Begin, p.End
		}
		for _, t := range f.txns[v:] {
			hit := false
			for _, op := range t.Ops {
				hit = hit || touches(op, b, e)
			}
			if hit {
				conflicts = append(conflicts, i)
				break
			}
		}
	}
	if conflicts != nil {
		return notCommitted("conflict", conflicts)
	}
	v := f.last() + 1
	f.txns = append(f.txns, fakeTxn{Version: v, RequestID: c.RequestID, Ops: c.Operations})
	f.requests[c.RequestID] = v
	close(f.changed)
	f.changed = make(chan struct{})
	return 200, map[string]any{"request_id": c.RequestID, "status": "committed", "version": v, "leader_id": f.leader}
}

func (f *fakeServer) status(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("request_id")
	f.mu.Lock()
	f.statusCalls++
	if f.statusDown > 0 {
		f.statusDown--
		f.mu.Unlock()
		dropConn(w)
		return
	}
	if f.inFlightPolls > 0 {
		f.inFlightPolls--
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"request_id": id, "status": "in_flight"})
		return
	}
	v, ok := f.requests[id]
	f.mu.Unlock()
	if ok {
		writeJSON(w, 200, map[string]any{"request_id": id, "status": "committed", "version": v})
		return
	}
	writeJSON(w, 200, map[string]any{"request_id": id, "status": "not_committed"})
}

func (f *fakeServer) subscribe(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pos := q.Get("after")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		pos = id
	}
	f.mu.Lock()
	f.subscribeCalls++
	f.lastEventIDs = append(f.lastEventIDs, r.Header.Get("Last-Event-ID"))
	after := f.last()
	if pos != "" {
		var err error
		if after, err = strconv.ParseUint(pos, 10, 64); err != nil {
			f.mu.Unlock()
			writeErr(w, 400, "bad_request", "after: not a version")
			return
		}
	}
	if after > f.last() {
		f.mu.Unlock()
		writeJSON(w, 400, map[string]any{"error": "bad_request", "reason": "future_version", "message": "after: future version"})
		return
	}
	if after < f.oldest {
		f.mu.Unlock()
		writeErr(w, 410, "gone", "after: below oldest_retained_version")
		return
	}
	dropAfter, partial, gapAt, retry, split := f.streamDropAfter, f.streamPartialDrop, f.gapAt, f.retryMS, f.splitWrites
	f.mu.Unlock()
	var begin, end []byte
	var err error
	if s := q.Get("begin"); s != "" {
		if begin, err = base64.StdEncoding.DecodeString(s); err != nil {
			writeErr(w, 400, "bad_request", "begin: bad base64")
			return
		}
	}
	if s := q.Get("end"); s != "" {
		if end, err = base64.StdEncoding.DecodeString(s); err != nil {
			writeErr(w, 400, "bad_request", "end: bad base64")
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	fl := w.(http.Flusher)
	send := func(s string) {
		if !split {
			fmt.Fprint(w, s)
			fl.Flush()
			return
		}
		for i := 0; i < len(s); i += 3 {
			fmt.Fprint(w, s[i:min(i+3, len(s))])
			fl.Flush()
		}
	}
	if retry > 0 {
		send(fmt.Sprintf("retry: %d\n\n", retry))
	}
	send(": hello\n\n")
	prev, sent := after, 0
	for {
		f.mu.Lock()
		pending := append([]fakeTxn(nil), f.txns[after:]...)
		changed := f.changed
		f.mu.Unlock()
		for _, t := range pending {
			after = t.Version
			if t.Version == gapAt {
				prev = t.Version // pretend it was sent: the client sees a gap
				continue
			}
			var ops []wireOp
			for _, op := range t.Ops {
				if (begin == nil && end == nil) || touches(op, begin, endOrMax(end)) {
					ops = append(ops, op)
				}
			}
			if len(ops) == 0 && len(t.Ops) > 0 {
				continue
			}
			ev := map[string]any{"version": t.Version, "prev_version": prev, "request_id": t.RequestID,
				"timestamp": "2026-11-25T18:00:00.123Z", "leader_id": f.leader, "operations": wireOps(ops)}
			data, err := json.Marshal(ev)
			if err != nil {
				panic(err)
			}
			if dropAfter > 0 && sent == dropAfter {
				if partial {
					send(fmt.Sprintf("id: %d\nevent: transaction\ndata: %s", t.Version, data[:len(data)/2]))
				}
				return
			}
			send(fmt.Sprintf("id: %d\r\nevent: transaction\r\ndata: %s\r\n\r\n", t.Version, data))
			prev = t.Version
			sent++
		}
		if len(pending) > 0 {
			send(fmt.Sprintf("event: checkpoint\ndata: {\"committed_version\":%d,\"leader_id\":%q}\n\n", after, f.leader))
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-time.After(time.Second):
			send(": keep-alive\n\n")
		}
	}
}

func endOrMax(e []byte) []byte {
	if e == nil {
		return bytes.Repeat([]byte{0xff}, 64)
	}
	return e
}

// wireOps renders ops with base64 fields and no nulls, as the server does.
func wireOps(ops []wireOp) []map[string]string {
	out := make([]map[string]string, 0, len(ops))
	enc := base64.StdEncoding.EncodeToString
	for _, op := range ops {
		m := map[string]string{"type": string(op.Type)}
		switch op.Type {
		case OpRangeDelete:
			m["begin"], m["end"] = enc(op.Begin), enc(op.End)
		case OpWrite:
			m["key"], m["value"] = enc(op.Key), enc(op.Value)
		default:
			m["key"] = enc(op.Key)
		}
		out = append(out, m)
	}
	return out
}

func (f *fakeServer) listPolicies(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ps := []Policy{}
	for id, v := range f.policies {
		ps = append(ps, Policy{PolicyID: id, Version: v})
	}
	writeJSON(w, 200, map[string]any{"policies": ps, "oldest_retained_version": f.oldest})
}

func (f *fakeServer) getPolicy(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.mu.Lock()
	v, ok := f.policies[id]
	f.mu.Unlock()
	if !ok {
		writeErr(w, 404, "not_found", "policy "+id)
		return
	}
	writeJSON(w, 200, Policy{PolicyID: id, Version: v})
}

func (f *fakeServer) putPolicy(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeErr(w, 415, "unsupported_media_type", "Content-Type: "+ct)
		return
	}
	var body struct {
		Version *uint64 `json:"version"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Version == nil {
		writeErr(w, 400, "bad_request", "version: missing or malformed")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if *body.Version < f.oldest {
		writeErr(w, 409, "conflict", "version: below oldest_retained_version")
		return
	}
	f.policies[id] = *body.Version
	writeJSON(w, 200, Policy{PolicyID: id, Version: *body.Version})
}

func (f *fakeServer) deletePolicy(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.policies[id]; !ok {
		writeErr(w, 404, "not_found", "policy "+id)
		return
	}
	delete(f.policies, id)
	w.WriteHeader(204)
}
