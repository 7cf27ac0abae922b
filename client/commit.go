package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// CommitResult is the outcome of a commit that happened.
type CommitResult struct {
	RequestID string
	Version   uint64
	LeaderID  string // empty when Resolved (status answers carry none)
	// Duplicate: the server had already committed this request_id and
	// answered with that earlier result; nothing new was committed.
	Duplicate bool
	// Resolved: the answer was lost and the outcome was learned from
	// /v1/status.
	Resolved bool
}

// commitAnswer is the body of a 200 or 409 commit answer.
type commitAnswer struct {
	RequestID string       `json:"request_id"`
	Status    CommitStatus `json:"status"`
	Version   uint64       `json:"version"`
	LeaderID  string       `json:"leader_id"`
	Duplicate bool         `json:"duplicate"`
}

// Commit sends t and returns where it committed. A commit that did not
// happen is an *APIError (ErrConflict with the failing precondition indexes
// in Conflicts, ErrTooOld, ErrLeaderChanged, ErrBadRequest, ...).
//
// Lost answers are resolved with /v1/status before any retry (see the
// package doc); if that fails too the error is an *OutcomeUnknownError.
func (c *Client) Commit(ctx context.Context, t *Txn) (CommitResult, error) {
	id := t.requestID
	if id == "" {
		id = NewRequestID()
	}
	body := t.AppendJSON(make([]byte, 0, 256), id)
	var lastErr error
	// attempts counts commits that reached a server. A refused connection
	// to a leader that a replica named does not count while that has gone
	// on for less than the outcome wait: it is a takeover (the old leader
	// is gone, the replica names it until its lease expires), bounded by
	// time instead.
	var unreachableSince time.Time
	for attempt, tries := 0, 0; attempt < c.maxAttempts; attempt, tries = attempt+1, tries+1 {
		if tries > 0 {
			if err := c.sleep(ctx, min(tries, 8)); err != nil {
				return CommitResult{}, fmt.Errorf("weaseldb commit %s: not committed: %w", id, errors.Join(lastErr, err))
			}
		}
		res, err := c.commitOnce(ctx, body)
		if err == nil {
			return res, nil
		}
		lastErr = err
		var ae *APIError
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests:
			// Shed before processing: certainly not committed.
			continue
		case errors.As(err, &ae) && ae.Status < 500:
			return CommitResult{}, err // a definite answer
		case isNotSent(err):
			// The connection was refused: the commit never left, so it is
			// sent again (to the next endpoint) without asking.
			if _, redirected := notSent(err); redirected {
				if unreachableSince.IsZero() {
					unreachableSince = time.Now()
				}
				if time.Since(unreachableSince) < c.outcomeWait {
					attempt--
				}
			}
			c.log.Debug("weaseldb client: commit not sent, retrying", "request_id", id, "err", err)
			continue
		}
		unreachableSince = time.Time{}
		// The answer is lost or the server failed mid-way: learn the outcome
		// before sending the commit again.
		st, rerr := c.resolve(ctx, id)
		if rerr != nil {
			return CommitResult{}, &OutcomeUnknownError{RequestID: id, Err: errors.Join(err, rerr)}
		}
		if st.Status == StatusCommitted {
			return CommitResult{RequestID: id, Version: st.Version, Resolved: true}, nil
		}
		c.log.Debug("weaseldb client: commit not committed, retrying", "request_id", id, "attempt", attempt+1, "err", err)
	}
	return CommitResult{}, fmt.Errorf("weaseldb commit %s: not committed after %d attempts: %w", id, c.maxAttempts, lastErr)
}

func isNotSent(err error) bool { yes, _ := notSent(err); return yes }

// commitOnce sends one commit attempt.
func (c *Client) commitOnce(ctx context.Context, body []byte) (CommitResult, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.send(ctx, c.http, http.MethodPost, "/v1/commit", body, nil)
	if err != nil {
		return CommitResult{}, err
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return CommitResult{}, readAPIError(resp)
	}
	var a commitAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, answerBytesMax)).Decode(&a); err != nil {
		// A 200 whose body was cut: committed, but where? Ask.
		return CommitResult{}, fmt.Errorf("weaseldb commit: decode answer: %w", err)
	}
	if a.Status != StatusCommitted {
		return CommitResult{}, fmt.Errorf("weaseldb commit: 200 answer with status %q", a.Status)
	}
	return CommitResult{RequestID: a.RequestID, Version: a.Version, LeaderID: a.LeaderID, Duplicate: a.Duplicate}, nil
}

// resolve asks /v1/status until it gives a final answer (committed or
// not_committed), waiting with backoff while the commit is in flight or no
// server answers. Status follows 307s and moves between endpoints, so after
// a takeover it asks the new leader. It gives up when status requests have
// failed for the outcome wait (and at least twice), or after
// defaultStatusPollsMax in_flight answers.
func (c *Client) resolve(ctx context.Context, id string) (StatusInfo, error) {
	failures, polls := 0, 0
	var lastErr error
	var failingSince time.Time
	for {
		st, err := c.Status(ctx, id, 0) // Status itself retries transport errors
		switch {
		case err != nil:
			failures++
			lastErr = err
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if (failures >= 2 && time.Since(failingSince) >= c.outcomeWait) || ctx.Err() != nil {
				return StatusInfo{}, fmt.Errorf("weaseldb status %s: %w", id, lastErr)
			}
		case st.Status == StatusCommitted || st.Status == StatusNotCommitted:
			return st, nil
		case st.Status == StatusInFlight:
			failures, failingSince = 0, time.Time{}
			polls++
			if polls >= defaultStatusPollsMax {
				return StatusInfo{}, fmt.Errorf("weaseldb status %s: still in flight after %d polls", id, polls)
			}
		default:
			return StatusInfo{}, fmt.Errorf("weaseldb status %s: unknown status %q", id, st.Status)
		}
		if err := c.sleep(ctx, min(polls+failures, 6)); err != nil {
			return StatusInfo{}, fmt.Errorf("weaseldb status %s: %w", id, err)
		}
	}
}
