package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults of the options; zero or negative option values select them.
const (
	defaultTimeout         = 10 * time.Second
	defaultMaxAttempts     = 5
	defaultBackoffMin      = 50 * time.Millisecond
	defaultBackoffMax      = 2 * time.Second
	defaultOutcomeWait     = 15 * time.Second // longer than a takeover (≤ 5s by default)
	defaultIdleConnsPerHst = 128
	defaultStatusPollsMax  = 100 // bounds the in_flight polling of one resolution
	redirectsMax           = 5   // 307 hops followed for one request
	answerBytesMax         = 8 << 20
)

// EnvAuthToken is the environment variable a Client reads its bearer token
// from when WithAuthToken is not given.
const EnvAuthToken = "WEASELDB_AUTH_TOKEN"

// Client talks to a WeaselDB server, or to a leader and its replicas. It is
// safe for concurrent use and reuses connections (keep-alive); make one and
// share it.
//
// With several endpoints it sends every request to the current one, moves
// to the next on a connection error, and follows 307 redirects (a replica
// names the leader) keeping method, body and token; it then remembers the
// leader it was sent to until a connection to it fails.
type Client struct {
	endpoints   []string // immutable: base URLs without trailing slash; never empty
	cur         atomic.Uint32
	leader      atomic.Pointer[string] // base URL learned from a 307; nil: none
	token       string                 // immutable: bearer token; empty: none
	http        *http.Client
	stream      *http.Client // for /v1/subscribe: no overall timeout
	timeout     time.Duration
	maxAttempts int
	backoffMin  time.Duration
	backoffMax  time.Duration
	log         *slog.Logger
	tokenSet    bool // WithAuthToken was given: the environment is not read
	outcomeWait time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient uses hc for every request (subscriptions included; give it
// no Timeout if you subscribe, a stream lasts). By default the client builds
// its own transport with a pool of keep-alive connections.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http, c.stream = hc, hc }
}

// WithTimeout bounds each attempt of a non-streaming request (default 10s).
// The caller's context bounds the whole call, retries included.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithMaxAttempts bounds how many times a request is sent (default 5,
// 1 = no retries). Commits are re-sent only after /v1/status said
// not_committed.
func WithMaxAttempts(n int) Option { return func(c *Client) { c.maxAttempts = n } }

// WithBackoff sets the exponential backoff between attempts: the n-th wait
// is uniformly random in [d/2, d] with d = min(max, min·2ⁿ) (defaults 50ms,
// 2s).
func WithBackoff(min, max time.Duration) Option {
	return func(c *Client) { c.backoffMin, c.backoffMax = min, max }
}

// WithOutcomeWait bounds how long Commit keeps asking /v1/status about a
// commit whose answer was lost while no server answers (default 15s, longer
// than a leader takeover) before it returns an *OutcomeUnknownError.
func WithOutcomeWait(d time.Duration) Option { return func(c *Client) { c.outcomeWait = d } }

// WithLogger logs reconnections and retries (never per successful request).
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithAuthToken sends "Authorization: Bearer token" on every request, for a
// server configured with a token. Without this option the client uses
// $WEASELDB_AUTH_TOKEN when it is set; an empty token sends none.
func WithAuthToken(token string) Option {
	return func(c *Client) { c.token = strings.TrimSpace(token); c.tokenSet = true }
}

// New returns a client of the server at baseURL (e.g.
// "http://127.0.0.1:8080"). baseURL may list several endpoints separated by
// commas ("http://a:8080,http://b:8080"): a leader and its replicas.
func New(baseURL string, opts ...Option) *Client {
	c := &Client{}
	for _, u := range strings.Split(baseURL, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			c.endpoints = append(c.endpoints, u)
		}
	}
	if len(c.endpoints) == 0 {
		c.endpoints = []string{""} // every request fails, naming the empty URL
	}
	for _, o := range opts {
		o(c)
	}
	if !c.tokenSet {
		c.token = strings.TrimSpace(os.Getenv(EnvAuthToken))
	}
	if c.timeout <= 0 {
		c.timeout = defaultTimeout
	}
	if c.maxAttempts <= 0 {
		c.maxAttempts = defaultMaxAttempts
	}
	if c.backoffMin <= 0 {
		c.backoffMin = defaultBackoffMin
	}
	if c.backoffMax < c.backoffMin {
		c.backoffMax = max(defaultBackoffMax, c.backoffMin)
	}
	if c.outcomeWait <= 0 {
		c.outcomeWait = defaultOutcomeWait
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.http == nil {
		tr := &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          4 * defaultIdleConnsPerHst,
			MaxIdleConnsPerHost:   defaultIdleConnsPerHst,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
		// Timeouts are per attempt through contexts, not http.Client.Timeout,
		// so that one transport serves both requests and long streams.
		c.http = &http.Client{Transport: tr}
		c.stream = c.http
	}
	// Redirects are followed by the client itself (see send): net/http would
	// drop the Authorization header on the way to another port.
	c.http, c.stream = noRedirects(c.http), noRedirects(c.stream)
	return c
}

func noRedirects(hc *http.Client) *http.Client {
	cp := *hc
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

// Endpoints returns the base URLs the client was given.
func (c *Client) Endpoints() []string { return append([]string(nil), c.endpoints...) }

// target returns the base URL the next request goes to: the leader a 307
// named (learned is then true), else the current endpoint.
func (c *Client) target() (base string, learned bool) {
	if l := c.leader.Load(); l != nil {
		return *l, true
	}
	return c.endpoints[int(c.cur.Load())%len(c.endpoints)], false
}

// failed is told that a connection to base failed: forget it as leader, or
// move to the next endpoint (unless another request already moved on).
func (c *Client) failed(base string) {
	if l := c.leader.Load(); l != nil {
		if *l == base {
			c.leader.CompareAndSwap(l, nil)
		}
		return
	}
	i := c.cur.Load()
	if c.endpoints[int(i)%len(c.endpoints)] == base && len(c.endpoints) > 1 {
		if c.cur.CompareAndSwap(i, (i+1)%uint32(len(c.endpoints))) {
			c.log.Debug("weaseldb client: next endpoint", "failed", base, "next", c.endpoints[int(i+1)%len(c.endpoints)])
		}
	}
}

// send sends one request to the current target and follows 307/308
// redirects to their Location with the same method, body and headers. On a
// connection error it moves the client to the next endpoint and returns the
// error (wrapped with the URL); the caller decides whether to retry.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, body []byte, hdr http.Header) (*http.Response, error) {
	base, learned := c.target()
	u := base + path
	for hop := 0; ; hop++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return nil, fmt.Errorf("weaseldb %s %s: %w", method, u, err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				c.failed(base)
			}
			return nil, &transportError{URL: u, Method: method, Err: err, Redirected: learned}
		}
		if resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect {
			return resp, nil
		}
		loc, lerr := resp.Location()
		if lerr != nil || hop >= redirectsMax {
			return resp, nil // shown to the caller as an *APIError
		}
		drainClose(resp.Body)
		next := loc.Scheme + "://" + loc.Host
		c.leader.Store(&next)
		c.log.Debug("weaseldb client: redirected", "from", u, "to", loc.String())
		base, u, learned = next, loc.String(), true
	}
}

// transportError is a request that got no HTTP answer. Redirected: the
// server was one a 307 named (a leader), not one of the endpoints.
type transportError struct {
	URL, Method string
	Err         error
	Redirected  bool
}

func (e *transportError) Error() string {
	return fmt.Sprintf("weaseldb %s %s: %v", e.Method, e.URL, e.Err)
}

func (e *transportError) Unwrap() error { return e.Err }

// notSent reports whether err proves the request never reached a server:
// the connection could not be made (refused, no route, dial timeout).
// redirected says the server was a leader a replica named.
func notSent(err error) (yes, redirected bool) {
	var te *transportError
	if !errors.As(err, &te) {
		return false, false
	}
	var oe *net.OpError
	return errors.As(te.Err, &oe) && oe.Op == "dial", te.Redirected
}

// VersionInfo is the answer of GET /v1/version.
type VersionInfo struct {
	Version  uint64 `json:"version"`
	LeaderID string `json:"leader_id"`
	// Role is "leader" or "replica" (empty from servers that predate it).
	Role string `json:"role,omitempty"`
	// LeaderURL: on a replica, the leader it knows of (empty if none).
	LeaderURL string `json:"leader_url,omitempty"`
}

// Version returns the latest committed version and the current leader id.
func (c *Client) Version(ctx context.Context) (VersionInfo, error) {
	var v VersionInfo
	err := c.idempotent(ctx, http.MethodGet, "/v1/version", nil, &v)
	return v, err
}

// Ready returns nil when GET /readyz answers 2xx (the server leads, has
// recovered and can persist). It does not retry.
func (c *Client) Ready(ctx context.Context) error {
	return c.once(ctx, http.MethodGet, "/readyz", nil, nil)
}

// CommitStatus is the status field of commit and status answers.
type CommitStatus string

// Commit statuses, as on the wire.
const (
	StatusCommitted    CommitStatus = "committed"
	StatusNotCommitted CommitStatus = "not_committed"
	StatusInFlight     CommitStatus = "in_flight"
)

// StatusInfo is the answer of GET /v1/status. Version is set when Status is
// StatusCommitted.
type StatusInfo struct {
	RequestID string       `json:"request_id"`
	Status    CommitStatus `json:"status"`
	Version   uint64       `json:"version"`
}

// Status asks whether the commit with requestID committed after minVersion
// (exclusive). minVersion 0 omits the parameter: the server's whole status
// window. An ErrGone error means minVersion is older than that window.
func (c *Client) Status(ctx context.Context, requestID string, minVersion uint64) (StatusInfo, error) {
	q := url.Values{"request_id": {requestID}}
	if minVersion > 0 {
		q.Set("min_version", strconv.FormatUint(minVersion, 10))
	}
	var s StatusInfo
	err := c.idempotent(ctx, http.MethodGet, "/v1/status?"+q.Encode(), nil, &s)
	return s, err
}

// Policy is one retention policy: keep every transaction with version > Version.
type Policy struct {
	PolicyID string `json:"policy_id"`
	Version  uint64 `json:"version"`
}

// Policies is the answer of GET /v1/retention/.
type Policies struct {
	Policies              []Policy `json:"policies"`
	OldestRetainedVersion uint64   `json:"oldest_retained_version"`
}

// PutPolicy creates or moves the policy id to version v. A v below the
// oldest retained version is an ErrConflict.
func (c *Client) PutPolicy(ctx context.Context, id string, v uint64) (Policy, error) {
	body := strconv.AppendUint([]byte(`{"version":`), v, 10)
	body = append(body, '}')
	var p Policy
	err := c.idempotent(ctx, http.MethodPut, "/v1/retention/"+url.PathEscape(id), body, &p)
	return p, err
}

// GetPolicy returns the policy id, or an ErrNotFound error.
func (c *Client) GetPolicy(ctx context.Context, id string) (Policy, error) {
	var p Policy
	err := c.idempotent(ctx, http.MethodGet, "/v1/retention/"+url.PathEscape(id), nil, &p)
	return p, err
}

// ListPolicies returns every policy and the oldest retained version.
func (c *Client) ListPolicies(ctx context.Context) (Policies, error) {
	var p Policies
	err := c.idempotent(ctx, http.MethodGet, "/v1/retention/", nil, &p)
	return p, err
}

// DeletePolicy removes the policy id; ErrNotFound if there is none. When a
// first attempt's answer was lost and the retry finds no policy, the first
// attempt deleted it and DeletePolicy returns nil.
func (c *Client) DeletePolicy(ctx context.Context, id string) error {
	return c.idempotent(ctx, http.MethodDelete, "/v1/retention/"+url.PathEscape(id), nil, nil)
}

// idempotent sends a request that is safe to repeat, retrying transport
// errors, 429 and 5xx with backoff up to maxAttempts.
func (c *Client) idempotent(ctx context.Context, method, path string, body []byte, out any) error {
	var err error
	for attempt := 0; attempt < c.maxAttempts; attempt++ {
		if attempt > 0 {
			if werr := c.sleep(ctx, attempt); werr != nil {
				return errors.Join(err, werr)
			}
		}
		err = c.once(ctx, method, path, body, out)
		if err == nil {
			return nil
		}
		if method == http.MethodDelete && attempt > 0 && errors.Is(err, ErrNotFound) {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
		c.log.Debug("weaseldb client: retrying", "method", method, "path", path, "attempt", attempt+1, "err", err)
	}
	return err
}

// once sends one request with the per-attempt timeout and decodes a 2xx
// answer into out (nil: discard) or a non-2xx answer into an *APIError.
func (c *Client) once(ctx context.Context, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.send(ctx, c.http, method, path, body, http.Header{"Accept": {"application/json"}})
	if err != nil {
		return err
	}
	defer drainClose(resp.Body)
	if resp.StatusCode/100 != 2 {
		return readAPIError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, answerBytesMax)).Decode(out); err != nil {
		return fmt.Errorf("weaseldb %s %s: decode answer: %w", method, resp.Request.URL, err)
	}
	return nil
}

// errorBody is every non-2xx body, with the commit answer's extra fields.
type errorBody struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	Reason    string `json:"reason"`
	Conflicts []int  `json:"conflicts"`
	Version   uint64 `json:"version"`
	LeaderID  string `json:"leader_id"`
	RequestID string `json:"request_id"`
	LeaderURL string `json:"leader_url"`
}

func (b *errorBody) apiError(status int) *APIError {
	return &APIError{Status: status, Code: b.Error, Message: b.Message, Reason: b.Reason,
		Conflicts: b.Conflicts, Version: b.Version, LeaderID: b.LeaderID, RequestID: b.RequestID}
}

// readAPIError turns a non-2xx answer into an *APIError, even when its body
// is not the documented JSON (a proxy's page, a truncated body).
func readAPIError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, answerBytesMax)) // a short body still says something
	var b errorBody
	if err := json.Unmarshal(raw, &b); err != nil || b.Error == "" {
		b = errorBody{Error: codeForStatus(resp.StatusCode), Message: strings.TrimSpace(string(raw))}
	}
	return b.apiError(resp.StatusCode)
}

func codeForStatus(status int) string {
	switch status {
	case 400:
		return "bad_request"
	case 401:
		return "unauthorized"
	case 404:
		return "not_found"
	case 405:
		return "method_not_allowed"
	case 409:
		return "conflict"
	case 410:
		return "gone"
	case 413:
		return "payload_too_large"
	case 415:
		return "unsupported_media_type"
	case 429:
		return "too_many_requests"
	case 503:
		return "unavailable"
	}
	if status >= 500 {
		return "internal"
	}
	return "http_" + strconv.Itoa(status)
}

// retryable says whether a request that failed with err may be sent again:
// transport errors, timeouts, 429 and 5xx. Commits additionally need a
// status resolution first (see Commit).
func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == 429 || ae.Status >= 500
	}
	return !errors.Is(err, context.Canceled)
}

// backoff returns the wait before attempt n (n ≥ 1): full jitter in
// [d/2, d], d = min(backoffMax, backoffMin·2^(n-1)).
func (c *Client) backoff(n int, floor time.Duration) time.Duration {
	d := c.backoffMin
	for i := 1; i < n && d < c.backoffMax; i++ {
		d *= 2
	}
	d = min(d, c.backoffMax)
	d = max(d, floor)
	return d/2 + rand.N(d/2+1)
}

func (c *Client) sleep(ctx context.Context, n int) error {
	return sleepCtx(ctx, c.backoff(n, 0))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// drainClose reads a little of what is left so the connection can be
// reused, then closes.
func drainClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 64<<10) // best effort: only decides connection reuse
	body.Close()
}

// NewRequestID returns a random 32-hex request id.
func NewRequestID() string {
	var b [16]byte
	crand.Read(b[:]) // never fails since Go 1.24: it crashes the program instead
	return hex.EncodeToString(b[:])
}
