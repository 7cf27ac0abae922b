package workload

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeServer implements the slice of API.md that loadgen drives — POST
// /v1/commit with point and range preconditions, GET /v1/version, GET
// /v1/status and the SSE stream /v1/subscribe — in memory, over a real
// socket (net/http serves pipelined requests in order, as the real server
// must). It is the dumb model: one mutex, a map of key → last write version.
type fakeServer struct {
	mu struct {
		sync.Mutex
		version  uint64
		written  map[string]uint64
		log      []fakeTxn
		notify   chan struct{} // closed and replaced on every commit
		commits  uint64
		rejected uint64 // 4xx answers
	}
}

type fakeTxn struct {
	version   uint64
	requestID string
	opsJSON   string
}

func newFakeServer(t *testing.T) (*fakeServer, string) {
	f := &fakeServer{}
	f.mu.written = map[string]uint64{}
	f.mu.notify = make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/commit", f.commit)
	mux.HandleFunc("GET /v1/version", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		v := f.mu.version
		f.mu.Unlock()
		fmt.Fprintf(w, `{"version":%d,"leader_id":"fake"}`, v)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"request_id":%q,"status":"not_committed"}`, r.URL.Query().Get("request_id"))
	})
	mux.HandleFunc("GET /v1/subscribe", f.subscribe)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, strings.TrimPrefix(srv.URL, "http://")
}

func (f *fakeServer) commit(w http.ResponseWriter, r *http.Request) {
	var body struct {
		RequestID     string  `json:"request_id"`
		ReadVersion   *uint64 `json:"read_version"`
		Preconditions []struct {
			Type       string
			Key        []byte
			Begin, End []byte
		}
		Operations []json.RawMessage
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&body); err != nil || r.Header.Get("Content-Type") != "application/json" {
		f.mu.Lock()
		f.mu.rejected++
		f.mu.Unlock()
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"error":"bad_request","message":%q}`, fmt.Sprint(err))
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var conflicts []int
	for i, p := range body.Preconditions {
		switch p.Type {
		case "point_read":
			if f.mu.written[string(p.Key)] > *body.ReadVersion {
				conflicts = append(conflicts, i)
			}
		case "range_read":
			for k, v := range f.mu.written {
				if k >= string(p.Begin) && k < string(p.End) && v > *body.ReadVersion {
					conflicts = append(conflicts, i)
					break
				}
			}
		}
	}
	if len(conflicts) > 0 {
		w.WriteHeader(409)
		c, _ := json.Marshal(conflicts)
		fmt.Fprintf(w, `{"request_id":%q,"status":"not_committed","reason":"conflict","conflicts":%s,"version":%d,"leader_id":"fake","error":"conflict","message":"m"}`,
			body.RequestID, c, f.mu.version)
		return
	}
	f.mu.version++
	f.mu.commits++
	for _, op := range body.Operations {
		var o struct{ Key []byte }
		json.Unmarshal(op, &o)
		f.mu.written[string(o.Key)] = f.mu.version
	}
	ops, _ := json.Marshal(body.Operations)
	f.mu.log = append(f.mu.log, fakeTxn{version: f.mu.version, requestID: body.RequestID, opsJSON: string(ops)})
	close(f.mu.notify)
	f.mu.notify = make(chan struct{})
	fmt.Fprintf(w, `{"request_id":%q,"status":"committed","version":%d,"leader_id":"fake"}`, body.RequestID, f.mu.version)
}

func (f *fakeServer) subscribe(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	f.mu.Lock()
	sent := f.mu.version
	f.mu.Unlock()
	fmt.Fprint(w, ": hello\n\n")
	fl.Flush()
	for {
		f.mu.Lock()
		pending := f.mu.log[sent:]
		notify := f.mu.notify
		f.mu.Unlock()
		for _, t := range pending {
			fmt.Fprintf(w, "id: %d\nevent: transaction\ndata: {\"version\":%d,\"prev_version\":%d,\"request_id\":%q,\"leader_id\":\"fake\",\"operations\":%s}\n\n",
				t.version, t.version, sent, t.requestID, t.opsJSON)
			sent = t.version
		}
		if len(pending) > 0 {
			fmt.Fprintf(w, "event: checkpoint\ndata: {\"committed_version\":%d,\"leader_id\":\"fake\"}\n\n", sent)
			fl.Flush()
		}
		select {
		case <-notify:
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeServer) counts() (commits, rejected uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.commits, f.mu.rejected
}
