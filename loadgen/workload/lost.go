package workload

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// lostIDsMax bounds the request ids kept for resolution; beyond it a lost
// answer is only counted (as unknown).
const lostIDsMax = 100_000

// requestID is one of this run's request ids (see requestIDPrefix).
type requestID [requestIDBytes]byte

// lostSet collects the request ids of commits whose answer was lost (the
// connection broke with them in flight). At the end of the run they are
// resolved with /v1/status, never sent again. Safe for concurrent use.
type lostSet struct {
	mu struct {
		sync.Mutex
		ids       []requestID
		unknownID int // lost without a usable id (request ids off, or over lostIDsMax)
	}
}

func (l *lostSet) add(id *requestID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if id == nil || id[0] == 0 || len(l.mu.ids) >= lostIDsMax {
		l.mu.unknownID++
		return
	}
	l.mu.ids = append(l.mu.ids, *id)
}

// LostAnswers says what became of the commits whose answer was lost,
// learned from /v1/status after the run (on whichever server leads then:
// 307s are followed).
type LostAnswers struct {
	Count        uint64 `json:"count"`
	Committed    uint64 `json:"committed"`
	NotCommitted uint64 `json:"not_committed"`
	Unknown      uint64 `json:"unknown"` // no final answer in time, or no request id to ask about
}

// resolve asks /v1/status about every lost id, from a few goroutines,
// until each has a final answer or ctx ends.
func (l *lostSet) resolve(ctx context.Context, ends *Endpoints, token string) *LostAnswers {
	l.mu.Lock()
	ids, unknown := l.mu.ids, l.mu.unknownID
	l.mu.Unlock()
	if len(ids) == 0 && unknown == 0 {
		return nil
	}
	res := &LostAnswers{Count: uint64(len(ids) + unknown), Unknown: uint64(unknown)}
	var mu sync.Mutex
	next := make(chan requestID)
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 5 * time.Second}
	for range 8 {
		wg.Go(func() {
			for id := range next {
				st := statusOf(ctx, hc, ends, token, id[:])
				mu.Lock()
				switch st {
				case "committed":
					res.Committed++
				case "not_committed":
					res.NotCommitted++
				default:
					res.Unknown++
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	return res
}

// statusOf polls /v1/status for id until committed or not_committed, or
// ctx ends ("" then).
func statusOf(ctx context.Context, hc *http.Client, ends *Endpoints, token string, id []byte) string {
	for ctx.Err() == nil {
		addr := ends.Addr()
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/status?request_id="+url.QueryEscape(string(id)), nil)
		if err != nil {
			return ""
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req) // follows a replica's 307 (same host: the token goes along)
		if err != nil {
			ends.Failed(addr)
		} else {
			var a struct {
				Status string `json:"status"`
			}
			err = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&a)
			resp.Body.Close()
			if resp.StatusCode == 200 && err == nil && (a.Status == "committed" || a.Status == "not_committed") {
				return a.Status
			}
			if resp.StatusCode/100 == 4 {
				return "" // 410: below the status window; 4xx: will not change
			}
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return ""
}
