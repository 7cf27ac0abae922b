package client

import (
	"errors"
	"fmt"
)

// Sentinel errors matched by errors.Is against the errors this package
// returns. An *APIError matches the sentinel of its status code and, for
// commit answers, of its reason.
var (
	// ErrConflict: a precondition failed (409, reason "conflict"), or a
	// retention policy version below the oldest retained one (409).
	ErrConflict = errors.New("weaseldb: conflict")
	// ErrTooOld: a precondition version is older than the server's conflict
	// window (409, reason "too_old"); re-read at a newer version.
	ErrTooOld = errors.New("weaseldb: read version too old")
	// ErrLeaderChanged: the commit named a leader_id that is not the
	// current leader's (409, reason "leader_changed").
	ErrLeaderChanged = errors.New("weaseldb: leader changed")
	// ErrFutureVersion: a version greater than any the server assigned
	// (400, reason "future_version"); also matches ErrBadRequest.
	ErrFutureVersion = errors.New("weaseldb: future version")
	// ErrBadRequest: the server refused the request as malformed (400).
	ErrBadRequest = errors.New("weaseldb: bad request")
	// ErrUnauthorized: the server wants a bearer token and got none or a
	// wrong one (401); see WithAuthToken.
	ErrUnauthorized = errors.New("weaseldb: unauthorized")
	// ErrNotFound: no such resource (404).
	ErrNotFound = errors.New("weaseldb: not found")
	// ErrGone: the asked-for position is older than what the server keeps
	// (410).
	ErrGone = errors.New("weaseldb: gone")
	// ErrPayloadTooLarge: a key, value, body or count over the limits (413).
	ErrPayloadTooLarge = errors.New("weaseldb: payload too large")
	// ErrTooManyRequests: the server shed the request (429).
	ErrTooManyRequests = errors.New("weaseldb: too many requests")
	// ErrUnavailable: the server cannot serve or persist right now (503).
	ErrUnavailable = errors.New("weaseldb: unavailable")
	// ErrOutcomeUnknown: a commit's answer was lost and its outcome could
	// not be resolved with /v1/status. See OutcomeUnknownError.
	ErrOutcomeUnknown = errors.New("weaseldb: commit outcome unknown")
	// ErrGap: a subscription saw a transaction whose prev_version is not
	// the previous version it delivered. See GapError.
	ErrGap = errors.New("weaseldb: gap in subscription stream")
)

// Reasons carried by 409 commit answers and some 400 answers.
const (
	ReasonConflict      = "conflict"
	ReasonTooOld        = "too_old"
	ReasonLeaderChanged = "leader_changed"
	ReasonFutureVersion = "future_version"
)

// APIError is a non-2xx answer of the server. Code and Message come from
// every error body; Reason, Conflicts, Version, LeaderID and RequestID are
// set when the answer carries them (409 commit answers always carry Version
// and LeaderID).
type APIError struct {
	Status    int    // HTTP status code
	Code      string // "error" field, e.g. "conflict", "bad_request"
	Message   string // "message" field: what is wrong, naming the field
	Reason    string // "reason" field, e.g. ReasonConflict
	Conflicts []int  // 0-based indexes of the failed preconditions
	Version   uint64 // latest committed version (409 answers)
	LeaderID  string // current leader id (409 answers)
	RequestID string // echoed request_id (commit answers)
}

// Error describes the answer in one line.
func (e *APIError) Error() string {
	s := fmt.Sprintf("weaseldb: %d %s", e.Status, e.Code)
	if e.Reason != "" && e.Reason != e.Code {
		s += " (" + e.Reason + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if len(e.Conflicts) > 0 {
		s += fmt.Sprintf(" [conflicts %v]", e.Conflicts)
	}
	return s
}

// Is matches e against this package's sentinels.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrConflict:
		return e.Status == 409 && (e.Reason == "" || e.Reason == ReasonConflict)
	case ErrTooOld:
		return e.Reason == ReasonTooOld
	case ErrLeaderChanged:
		return e.Reason == ReasonLeaderChanged
	case ErrFutureVersion:
		return e.Reason == ReasonFutureVersion
	case ErrBadRequest:
		return e.Status == 400
	case ErrUnauthorized:
		return e.Status == 401
	case ErrNotFound:
		return e.Status == 404
	case ErrGone:
		return e.Status == 410
	case ErrPayloadTooLarge:
		return e.Status == 413
	case ErrTooManyRequests:
		return e.Status == 429
	case ErrUnavailable:
		return e.Status == 503
	}
	return false
}

// OutcomeUnknownError is returned by Commit when the answer to a commit was
// lost and /v1/status could not say whether it committed. The commit may or
// may not have happened; ask Status(ctx, RequestID, 0) later to find out.
// Err holds the causes (the lost attempt's error and the status error).
type OutcomeUnknownError struct {
	RequestID string
	Err       error
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("weaseldb: outcome of commit %s unknown: %v", e.RequestID, e.Err)
}

// Is reports a match with ErrOutcomeUnknown.
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

// Unwrap returns the causes, so errors.Is(err, context.Canceled) works.
func (e *OutcomeUnknownError) Unwrap() error { return e.Err }

// GapError is returned by Subscription.Next when a transaction does not
// chain to the previous one: its PrevVersion is not Expected. The stream is
// no longer trustworthy; the subscription is finished.
type GapError struct {
	Expected uint64 // the version the client last delivered (or connected after)
	Got      uint64 // the transaction's prev_version
	Version  uint64 // the transaction's version
}

func (e *GapError) Error() string {
	return fmt.Sprintf("weaseldb: gap in subscription: transaction %d has prev_version %d, expected %d", e.Version, e.Got, e.Expected)
}

// Is reports a match with ErrGap.
func (e *GapError) Is(target error) bool { return target == ErrGap }
