package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/weaseldb/weaseldb/client"
)

// state of one request id in the ledger.
type state uint8

const (
	stateSent         state = iota + 1 // sent, no answer yet (or the answer was lost)
	stateAcked                         // 200 committed: must be in the log forever (until truncated)
	stateNotCommitted                  // status said not_committed after a restart: must never appear
)

type record struct {
	ops     []Op
	state   state
	version uint64 // stateAcked, or found in the log
}

// Ledger is everything a test's committers sent and learned: the oracle the
// log is checked against after a crash or a fault. Safe for concurrent use
// by committers; Verify must run while none is committing.
type Ledger struct {
	// MaxRetries bounds how many lost commits one Verify re-sends (0: no
	// bound); set it before use.
	MaxRetries int

	mu   sync.Mutex
	recs map[string]*record // guarded by mu
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{recs: make(map[string]*record)} }

// Sent records a commit before it is sent (request ids must be unique).
func (l *Ledger) Sent(rid string, ops []Op) {
	l.mu.Lock()
	l.recs[rid] = &record{ops: ops, state: stateSent}
	l.mu.Unlock()
}

// Acked records a 200 committed answer.
func (l *Ledger) Acked(rid string, version uint64) {
	l.mu.Lock()
	r := l.recs[rid]
	r.state, r.version = stateAcked, version
	l.mu.Unlock()
}

// NotCommitted records a definite refusal (a 409 conflict answer): the
// commit must never appear in the log.
func (l *Ledger) NotCommitted(rid string) {
	l.mu.Lock()
	l.recs[rid].state = stateNotCommitted
	l.mu.Unlock()
}

// Observed records a transaction a durable subscription delivered: as good
// as an acknowledgement, it must stay at that version. It fails if the
// ledger knows the request id at another version, as refused, or not at all.
func (l *Ledger) Observed(rid string, version uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.recs[rid]
	switch {
	case !ok:
		return fmt.Errorf("subscriber saw request_id %q at version %d, which no committer sent", rid, version)
	case r.state == stateNotCommitted:
		return fmt.Errorf("subscriber saw %s at version %d, but it was refused (409)", rid, version)
	case r.state == stateAcked && r.version != version:
		return fmt.Errorf("subscriber saw %s at version %d, acknowledged at %d", rid, version, r.version)
	}
	r.state, r.version = stateAcked, version
	return nil
}

// Check is what one Verify found.
type Check struct {
	Recovered, Oldest   uint64 // the server's version and oldest retained version
	Checked             int    // acknowledged commits found at their version
	Lost, LostCommitted int    // lost answers resolved, and how many had committed
	Retried             int    // lost commits re-sent by request_id
}

// Verify checks a server against the ledger, once no committer is running
// (typically right after a restart):
//
//  1. the log from the oldest retained version to the latest is contiguous
//     and chained, every request id in it was sent, once, with the
//     operations it was sent with, and none was reported not_committed
//     earlier;
//  2. every acknowledged commit is at its version;
//  3. every commit whose answer was lost is reported by /v1/status
//     consistently with the log (committed at the same version, or
//     not_committed and absent);
//  4. about half of the lost ones, picked by rng, are re-sent with the same
//     request_id: a committed one answers duplicate with its version, a
//     not-committed one commits once and then answers duplicate.
//
// Transactions without operations and with a request id no committer sent
// (none, or one the server generated) are the claims a
// new leader writes; they are skipped. Lost commits are resolved in the
// ledger, so a later Verify checks them as acknowledged or absent.
func (led *Ledger) Verify(ctx context.Context, hc *http.Client, url string, rng *rand.Rand) (Check, error) {
	var it Check
	led.mu.Lock()
	defer led.mu.Unlock()
	v, err := Version(ctx, hc, url)
	if err != nil {
		return it, err
	}
	oldest, err := SettledOldest(ctx, hc, url)
	if err != nil {
		return it, err
	}
	it.Recovered, it.Oldest = v.Version, oldest
	if it.Oldest > it.Recovered {
		return it, fmt.Errorf("oldest retained %d > version %d", it.Oldest, it.Recovered)
	}
	log, err := ReadLog(ctx, hc, url, it.Oldest, it.Recovered)
	if err != nil {
		return it, err
	}
	if err := checkLog(log, it.Oldest, it.Recovered, led); err != nil {
		return it, err
	}
	inLog := make(map[string]uint64, len(log))
	for _, t := range log {
		inLog[t.RequestID] = t.Version
	}
	// Every acknowledged commit is there, at its version.
	var lost []string
	for rid, r := range led.recs {
		switch r.state {
		case stateAcked:
			if r.version > it.Recovered {
				return it, fmt.Errorf("LOST: %s acknowledged at version %d, but the server recovered only to %d", rid, r.version, it.Recovered)
			}
			if r.version > it.Oldest {
				if got, ok := inLog[rid]; !ok || got != r.version {
					return it, fmt.Errorf("LOST: %s acknowledged at version %d, in the log at %d (present %v)", rid, r.version, got, ok)
				}
				it.Checked++
			}
		case stateSent:
			lost = append(lost, rid)
		}
	}
	// Every lost answer: /v1/status and the log agree.
	for _, rid := range lost {
		r := led.recs[rid]
		st, err := settledStatus(ctx, hc, url, rid)
		if err != nil {
			return it, err
		}
		if st.Status == "committed" && st.Version > it.Recovered {
			// On a live server a commit whose client gave up may still
			// have been in the pipeline when the log was read: read on.
			more, err := ReadLog(ctx, hc, url, it.Recovered, st.Version)
			if err != nil {
				return it, err
			}
			log = append(log, more...)
			if err := checkLog(log, it.Oldest, st.Version, led); err != nil {
				return it, err
			}
			for _, t := range more {
				inLog[t.RequestID] = t.Version
			}
			it.Recovered = st.Version
		}
		logV, inTheLog := inLog[rid]
		switch st.Status {
		case "committed":
			if !inTheLog || logV != st.Version {
				return it, fmt.Errorf("status says %s committed at %d, the log has it at %d (present %v)", rid, st.Version, logV, inTheLog)
			}
			r.state, r.version = stateAcked, st.Version
			it.LostCommitted++
		case "not_committed":
			if inTheLog {
				return it, fmt.Errorf("status says %s not_committed, the log has it at version %d", rid, logV)
			}
			r.state = stateNotCommitted
		default:
			return it, fmt.Errorf("status of %s after restart: %+v", rid, st)
		}
		it.Lost++
	}
	// Retry some of them by request_id: a committed one answers duplicate
	// with its version; a not-committed one commits once, then duplicates.
	for _, rid := range lost {
		if rng == nil || rng.IntN(2) == 0 {
			continue
		}
		if led.MaxRetries > 0 && it.Retried >= led.MaxRetries {
			break
		}
		r := led.recs[rid]
		if err := retry(ctx, hc, url, rid, r); err != nil {
			return it, err
		}
		it.Retried++
	}
	return it, nil
}

// checkLog checks the log read from (oldest, recovered]: contiguous, chained,
// every request id known, once, and with the operations it was sent with.
func checkLog(log []Txn, oldest, recovered uint64, led *Ledger) error {
	if uint64(len(log)) != recovered-oldest {
		return fmt.Errorf("log (%d, %d] has %d transactions, want %d", oldest, recovered, len(log), recovered-oldest)
	}
	seen := make(map[string]uint64, len(log))
	for i, t := range log {
		want := oldest + uint64(i) + 1
		if t.Version != want || t.PrevVersion != want-1 {
			return fmt.Errorf("log not contiguous at index %d: version %d prev %d, want %d prev %d", i, t.Version, t.PrevVersion, want, want-1)
		}
		if _, sent := led.recs[t.RequestID]; !sent && len(t.Operations) == 0 {
			// The empty transaction a new leader writes to claim the log
			// (engine.claimLeadership): one per start, with a generated
			// request id (or none, in logs written before issue 13.3).
			continue
		}
		if prev, dup := seen[t.RequestID]; dup {
			return fmt.Errorf("DUPLICATE: request_id %s at versions %d and %d", t.RequestID, prev, t.Version)
		}
		seen[t.RequestID] = t.Version
		r, ok := led.recs[t.RequestID]
		if !ok {
			return fmt.Errorf("version %d has request_id %q that no committer sent", t.Version, t.RequestID)
		}
		switch r.state {
		case stateAcked:
			if r.version != t.Version {
				return fmt.Errorf("CHANGED: %s acknowledged at version %d, in the log at %d", t.RequestID, r.version, t.Version)
			}
		case stateNotCommitted:
			return fmt.Errorf("%s was reported not_committed after an earlier restart, now in the log at %d", t.RequestID, t.Version)
		}
		if !reflect.DeepEqual(r.ops, t.Operations) {
			return fmt.Errorf("CHANGED: %s at version %d: operations %+v, sent %+v", t.RequestID, t.Version, t.Operations, r.ops)
		}
	}
	return nil
}

// SettledOldest returns the oldest retained version once three reads in a
// row, more than a truncate interval apart, agree.
func SettledOldest(ctx context.Context, hc *http.Client, url string) (uint64, error) {
	var last uint64
	same := 0
	for same < 3 {
		ret, err := ListRetention(ctx, hc, url)
		if err != nil {
			return 0, err
		}
		if ret.OldestRetainedVersion == last {
			same++
		} else {
			last, same = ret.OldestRetainedVersion, 1
		}
		time.Sleep(30 * time.Millisecond)
	}
	return last, nil
}

// settledStatus asks /v1/status until the answer is not in_flight (after a
// restart nothing of the old process can be in flight, so this is short).
func settledStatus(ctx context.Context, hc *http.Client, url, rid string) (StatusInfo, error) {
	for {
		code, st, err := Status(ctx, hc, url, rid)
		if err != nil {
			return st, err
		}
		if code != 200 {
			return st, fmt.Errorf("status of %s: HTTP %d %+v", rid, code, st)
		}
		if st.Status != "in_flight" {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("status of %s stays in_flight after a restart: %w", rid, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func retry(ctx context.Context, hc *http.Client, url, rid string, r *record) error {
	req := CommitRequest{RequestID: rid, Operations: r.ops}
	code, ans, err := Commit(ctx, hc, url, req)
	if err != nil {
		return fmt.Errorf("retry %s: %w", rid, err)
	}
	if code != 200 || ans.Status != "committed" {
		return fmt.Errorf("retry %s: HTTP %d %+v", rid, code, ans)
	}
	switch r.state {
	case stateAcked:
		if !ans.Duplicate || ans.Version != r.version {
			return fmt.Errorf("DOUBLE COMMIT: retry of %s (committed at %d) answered %+v", rid, r.version, ans)
		}
	case stateNotCommitted:
		if ans.Duplicate {
			return fmt.Errorf("retry of %s (status not_committed) answered duplicate %+v", rid, ans)
		}
		r.state, r.version = stateAcked, ans.Version
		// Once more: now it must be a duplicate of that version.
		code, again, err := Commit(ctx, hc, url, req)
		if err != nil {
			return fmt.Errorf("second retry %s: %w", rid, err)
		}
		if code != 200 || !again.Duplicate || again.Version != ans.Version {
			return fmt.Errorf("DOUBLE COMMIT: second retry of %s (committed at %d) answered HTTP %d %+v", rid, ans.Version, code, again)
		}
	default:
		return errors.New("retry: unresolved record")
	}
	// The client library resolves by status the same way; cross-check it.
	c := client.New(url, client.WithHTTPClient(hc))
	st, err := c.Status(ctx, rid, 0)
	if err != nil {
		return fmt.Errorf("client status of %s: %w", rid, err)
	}
	if st.Status != client.StatusCommitted || st.Version != r.version {
		return fmt.Errorf("client status of %s: %+v, want committed at %d", rid, st, r.version)
	}
	return nil
}

// CheckStatus asks /v1/status about up to n acknowledged commits above
// oldest, picked by rng, and checks each answers committed at its version.
// It returns how many it checked. Run it while no committer is running.
func (l *Ledger) CheckStatus(ctx context.Context, hc *http.Client, url string, oldest uint64, rng *rand.Rand, n int) (int, error) {
	l.mu.Lock()
	var rids []string
	for rid, r := range l.recs {
		if r.state == stateAcked && r.version > oldest {
			rids = append(rids, rid)
		}
	}
	l.mu.Unlock()
	rng.Shuffle(len(rids), func(i, j int) { rids[i], rids[j] = rids[j], rids[i] })
	checked := 0
	for _, rid := range rids[:min(n, len(rids))] {
		l.mu.Lock()
		want := l.recs[rid].version
		l.mu.Unlock()
		code, st, err := Status(ctx, hc, url, rid)
		if err != nil {
			return checked, err
		}
		if code != 200 || st.Status != "committed" || st.Version != want {
			return checked, fmt.Errorf("STATUS: %s acknowledged at version %d, /v1/status answers HTTP %d %+v", rid, want, code, st)
		}
		checked++
	}
	return checked, nil
}

// Forget drops what no later Verify needs: acknowledged commits at or below
// upTo (the oldest retained version: truncated, checked before) and refused
// ones (a refused id showing up later still fails: no committer sent it).
// It keeps a long run's memory bounded.
func (l *Ledger) Forget(upTo uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for rid, r := range l.recs {
		if (r.state == stateAcked && r.version <= upTo) || r.state == stateNotCommitted {
			delete(l.recs, rid)
		}
	}
}

// IsClaim reports whether t may be a new leader's claim of the log: a
// transaction without operations (committers of the suites always send
// some; a claim's request id is empty or generated by the server).
func IsClaim(t Txn) bool { return len(t.Operations) == 0 }
