package tests

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sseEvent is one Server-Sent Event as framed on the wire.
type sseEvent struct {
	id, event, data string
}

// txEvent is the data of a transaction event.
type txEvent struct {
	Version     uint64 `json:"version"`
	PrevVersion uint64 `json:"prev_version"`
	RequestID   string `json:"request_id"`
	Timestamp   string `json:"timestamp"`
	LeaderID    string `json:"leader_id"`
	Operations  []struct {
		Type  string `json:"type"`
		Key   string `json:"key"`
		Begin string `json:"begin"` // range_delete
		End   string `json:"end"`
		Value string `json:"value"`
	} `json:"operations"`
}

// cpEvent is the data of a checkpoint event.
type cpEvent struct {
	CommittedVersion uint64 `json:"committed_version"`
	LeaderID         string `json:"leader_id"`
}

// sseStream reads a raw /v1/subscribe answer; the events arrive on a
// channel filled by a reader goroutine, so next can give up.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	events chan sseEvent
}

// subscribeRaw opens GET /v1/subscribe?query with optional header pairs.
// A non-200 answer is returned as status and decoded body, with a nil
// stream.
func (s *server) subscribeRaw(query string, header ...string) (*sseStream, int, obj) {
	s.t.Helper()
	req, err := http.NewRequest("GET", s.URL+"/v1/subscribe?"+query, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		s.t.Fatalf("subscribe %s: %v", query, err)
	}
	if resp.StatusCode != 200 {
		defer resp.Body.Close()
		var o obj
		if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
			s.t.Fatalf("subscribe %s: %d answer is not JSON: %v", query, resp.StatusCode, err)
		}
		return nil, resp.StatusCode, o
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		s.t.Errorf("subscribe: Content-Type %q, want text/event-stream", ct)
	}
	st := &sseStream{t: s.t, resp: resp, events: make(chan sseEvent, 1024)}
	go st.read()
	s.t.Cleanup(st.close)
	return st, 200, nil
}

func (st *sseStream) read() {
	defer close(st.events)
	r := bufio.NewReaderSize(st.resp.Body, 1<<20)
	var ev sseEvent
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.event != "" || ev.data != "" {
				st.events <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"): // comment (keep-alive)
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[6:]
		}
	}
}

func (st *sseStream) close() { st.resp.Body.Close() }

// next returns the next event, failing the test if none comes in time or
// the stream ends.
func (st *sseStream) next() sseEvent {
	st.t.Helper()
	select {
	case ev, ok := <-st.events:
		if !ok {
			st.t.Fatal("subscribe: stream ended")
		}
		return ev
	case <-time.After(30 * time.Second):
		st.t.Fatal("subscribe: no event for 30s")
	}
	return sseEvent{}
}

// nextTx skips checkpoints and returns the next transaction event, checking
// that its id line matches its version.
func (st *sseStream) nextTx() txEvent {
	st.t.Helper()
	for {
		ev := st.next()
		if ev.event != "transaction" {
			continue
		}
		var tx txEvent
		if err := json.Unmarshal([]byte(ev.data), &tx); err != nil {
			st.t.Fatalf("transaction event: %v: %q", err, ev.data)
		}
		if ev.id != itoa(tx.Version) {
			st.t.Fatalf("transaction event id %q for version %d", ev.id, tx.Version)
		}
		return tx
	}
}

// nextCheckpoint skips transactions and returns the next checkpoint.
func (st *sseStream) nextCheckpoint() cpEvent {
	st.t.Helper()
	for {
		ev := st.next()
		if ev.event != "checkpoint" {
			continue
		}
		var cp cpEvent
		if err := json.Unmarshal([]byte(ev.data), &cp); err != nil {
			st.t.Fatalf("checkpoint event: %v: %q", err, ev.data)
		}
		return cp
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func unb64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("bad base64 %q: %v", s, err)
	}
	return string(b)
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
