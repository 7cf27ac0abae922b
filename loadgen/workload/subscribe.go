package workload

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// subscriber follows GET /v1/subscribe and measures, for every transaction
// event whose request_id this run made, the lag from the commit's send time
// (carried in the request_id, see requestIDPrefix) to the event's arrival.
// Compare with the commit latency: lag - commit latency is what the stream
// adds. Transactions without one of our ids (request ids off, other
// clients) are counted but not timed: with --request-id=false there is no lag.
//
// It also checks the stream's promise: prev_version chains with no gap.
type subscriber struct {
	ends    *Endpoints
	token   string
	durable bool
	runID   string
	rec     *recorder // lag; mu.n counts transaction events
	gaps    *atomic.Uint64
	resubs  *atomic.Uint64
	client  *http.Client
	// byServer counts transaction events per server; only this
	// subscriber's goroutine writes it, Run reads it after the end.
	byServer map[string]uint64
}

func (s *subscriber) run(ctx context.Context) {
	var last uint64 // last version seen; resubscribe after it
	for ctx.Err() == nil {
		err := s.follow(ctx, &last)
		if ctx.Err() != nil {
			return
		}
		slog.Debug("loadgen: subscriber resubscribes", "after", last, "err", err)
		s.resubs.Add(1)
		sleepCtx(ctx, reconnectBackoff)
	}
}

func (s *subscriber) follow(ctx context.Context, last *uint64) error {
	addr := s.ends.Addr()
	url := "http://" + addr + "/v1/subscribe?durable=" + strconv.FormatBool(s.durable)
	if *last > 0 {
		url += "&after=" + strconv.FormatUint(*last, 10)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return fmt.Errorf("subscribe request: %w", err)
	}
	if *last > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(*last, 10))
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			s.ends.Failed(addr) // a takeover: follow on the next endpoint
		}
		return fmt.Errorf("subscribe %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("subscribe: status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 256<<10), wireBodyBytesMax)
	var event []byte
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0: // dispatch
			if string(event) == "transaction" {
				s.transaction(data, last)
				s.byServer[addr]++
			}
			event, data = event[:0], data[:0]
		case bytes.HasPrefix(line, []byte("event:")):
			event = append(event[:0], bytes.TrimSpace(line[6:])...)
		case bytes.HasPrefix(line, []byte("data:")):
			d := line[5:]
			if len(d) > 0 && d[0] == ' ' {
				d = d[1:]
			}
			data = append(data, d...)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("subscribe stream: %w", err)
	}
	return fmt.Errorf("subscribe stream ended")
}

func (s *subscriber) transaction(data []byte, last *uint64) {
	arrived := nowNanos()
	version, _ := jsonUint(data, "version")
	prev, hasPrev := jsonUint(data, "prev_version")
	if *last != 0 && hasPrev && prev != *last {
		s.gaps.Add(1)
	}
	*last = max(*last, version)
	rid, _ := jsonString(data, "request_id")
	sent, ours := SendTimeOf(rid, s.runID)
	s.rec.mu.Lock()
	s.rec.mu.n++
	if ours {
		s.rec.mu.lat.Record(arrived - sent)
	}
	s.rec.mu.Unlock()
}

// adminWorker sends the mixed admin load: GET /v1/version and GET
// /v1/status (for a well-formed id nobody used: the answer is
// not_committed, the full lookup path) in turn, at rate per second.
type adminWorker struct {
	ends  *Endpoints
	token string
	rate  float64
	runID string
	rec   *recorder
}

func (a *adminWorker) run(ctx context.Context) {
	statusPath := "/v1/status?request_id=lg" + a.runID + "-admin-not-a-commit-0000000000000000"
	interval := time.Duration(float64(time.Second) / a.rate)
	for ctx.Err() == nil {
		addr := a.ends.Addr()
		c, err := dialWire(addr, a.token, dialTimeout)
		if err != nil {
			a.ends.Failed(addr)
			a.rec.mu.Lock()
			a.rec.mu.out.Transport++
			a.rec.mu.Unlock()
			sleepCtx(ctx, reconnectBackoff)
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.close() })
		next := nowNanos()
		for i := 0; ctx.Err() == nil; i++ {
			next += int64(interval)
			sleepCtx(ctx, time.Duration(next-nowNanos()))
			start := nowNanos()
			if i%2 == 0 {
				c.appendGet("/v1/version")
			} else {
				c.appendGet(statusPath)
			}
			status, body, err := flushRead(c)
			if err != nil {
				if ctx.Err() == nil {
					a.rec.mu.Lock()
					a.rec.mu.out.Transport++
					a.rec.mu.Unlock()
				}
				break
			}
			end := nowNanos()
			a.rec.mu.Lock()
			classify(&a.rec.mu.out, status, body)
			a.rec.mu.lat.Record(end - start)
			a.rec.mu.Unlock()
		}
		stop()
		c.close()
	}
}

func flushRead(c *wireConn) (int, []byte, error) {
	if err := c.flush(); err != nil {
		return 0, nil, err
	}
	return c.readResponse()
}
