package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// Op is one operation as on the wire (API.md): keys and values base64.
type Op struct {
	Type  string `json:"type"`
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`
	Begin string `json:"begin,omitempty"`
	End   string `json:"end,omitempty"`
}

// CommitRequest is the body of POST /v1/commit (only what the suites use).
type CommitRequest struct {
	RequestID     string         `json:"request_id,omitempty"`
	ReadVersion   uint64         `json:"read_version,omitempty"`
	Preconditions []Precondition `json:"preconditions,omitempty"`
	Operations    []Op           `json:"operations"`
}

// Precondition is one precondition as on the wire (API.md).
type Precondition struct {
	Type    string `json:"type"` // point_read or range_read
	Key     string `json:"key,omitempty"`
	Begin   string `json:"begin,omitempty"`
	End     string `json:"end,omitempty"`
	Version uint64 `json:"version,omitempty"`
}

// CommitAnswer is any answer of POST /v1/commit, error answers included.
type CommitAnswer struct {
	RequestID string `json:"request_id"`
	Status    string `json:"status"`
	Version   uint64 `json:"version"`
	Duplicate bool   `json:"duplicate"`
	Reason    string `json:"reason"`
	Error     string `json:"error"`
	Message   string `json:"message"`
}

// Commit posts req and returns the status code and the decoded answer. A
// transport error (the answer was lost) is returned as err with status 0.
func Commit(ctx context.Context, hc *http.Client, url string, req CommitRequest, header ...string) (int, CommitAnswer, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, CommitAnswer{}, fmt.Errorf("commit: %w", err)
	}
	var ans CommitAnswer
	status, err := Do(ctx, hc, "POST", url+"/v1/commit", body, &ans, header...)
	return status, ans, err
}

// Do sends one request (header is name, value pairs) and decodes a JSON
// answer into out when out is non-nil and the body is not empty. A body that
// is not JSON is an error naming it.
func Do(ctx context.Context, hc *http.Client, method, url string, body []byte, out any, header ...string) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, url, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%s %s: read answer (status %d): %w", method, url, resp.StatusCode, err)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: status %d, body not JSON: %q: %w", method, url, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, nil
}

// VersionInfo is the answer of GET /v1/version.
type VersionInfo struct {
	Version   uint64 `json:"version"`
	LeaderID  string `json:"leader_id"`
	Role      string `json:"role"`
	LeaderURL string `json:"leader_url"`
}

// Version asks GET /v1/version.
func Version(ctx context.Context, hc *http.Client, url string) (VersionInfo, error) {
	var v VersionInfo
	status, err := Do(ctx, hc, "GET", url+"/v1/version", nil, &v)
	if err == nil && status != 200 {
		err = fmt.Errorf("GET /v1/version: status %d", status)
	}
	return v, err
}

// StatusInfo is the answer of GET /v1/status.
type StatusInfo struct {
	RequestID string `json:"request_id"`
	Status    string `json:"status"`
	Version   uint64 `json:"version"`
	Error     string `json:"error"`
}

// Status asks GET /v1/status?request_id=rid.
func Status(ctx context.Context, hc *http.Client, url, rid string) (int, StatusInfo, error) {
	var s StatusInfo
	status, err := Do(ctx, hc, "GET", url+"/v1/status?request_id="+rid, nil, &s)
	return status, s, err
}

// Retention is the answer of GET /v1/retention/.
type Retention struct {
	Policies []struct {
		PolicyID string `json:"policy_id"`
		Version  uint64 `json:"version"`
	} `json:"policies"`
	OldestRetainedVersion uint64 `json:"oldest_retained_version"`
}

// ListRetention asks GET /v1/retention/.
func ListRetention(ctx context.Context, hc *http.Client, url string) (Retention, error) {
	var r Retention
	status, err := Do(ctx, hc, "GET", url+"/v1/retention/", nil, &r)
	if err == nil && status != 200 {
		err = fmt.Errorf("GET /v1/retention/: status %d", status)
	}
	return r, err
}

// PutRetention sets policy id to version v and returns the status code.
func PutRetention(ctx context.Context, hc *http.Client, url, id string, v uint64, header ...string) (int, error) {
	body := []byte(`{"version":` + strconv.FormatUint(v, 10) + `}`)
	return Do(ctx, hc, "PUT", url+"/v1/retention/"+id, body, nil, header...)
}

// Txn is a transaction event of /v1/subscribe.
type Txn struct {
	Version     uint64 `json:"version"`
	PrevVersion uint64 `json:"prev_version"`
	RequestID   string `json:"request_id"`
	Operations  []Op   `json:"operations"`
	LeaderID    string `json:"leader_id"`
}

// Stream reads a /v1/subscribe Server-Sent Events stream.
type Stream struct {
	resp *http.Response
	sc   *bufio.Scanner
}

// Subscribe opens GET /v1/subscribe?after=N. A non-200 answer is an error
// carrying the status and body.
func Subscribe(ctx context.Context, hc *http.Client, url string, after uint64) (*Stream, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/v1/subscribe?after="+strconv.FormatUint(after, 10), nil)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("subscribe after %d: %w", after, err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("subscribe after %d: status %d: %s", after, resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	return &Stream{resp: resp, sc: sc}, nil
}

// NextTxn returns the next transaction event, skipping checkpoints and
// comments.
func (s *Stream) NextTxn() (Txn, error) {
	var event string
	var data []byte
	for s.sc.Scan() {
		line := s.sc.Bytes()
		switch {
		case len(line) == 0:
			if event == "transaction" {
				var t Txn
				if err := json.Unmarshal(data, &t); err != nil {
					return Txn{}, fmt.Errorf("subscribe: transaction event %q: %w", data, err)
				}
				return t, nil
			}
			event, data = "", data[:0]
		case bytes.HasPrefix(line, []byte("event: ")):
			event = string(line[len("event: "):])
		case bytes.HasPrefix(line, []byte("data: ")):
			data = append(data, line[len("data: "):]...)
		}
	}
	if err := s.sc.Err(); err != nil {
		return Txn{}, fmt.Errorf("subscribe: %w", err)
	}
	return Txn{}, fmt.Errorf("subscribe: %w", io.ErrUnexpectedEOF)
}

// Close ends the stream.
func (s *Stream) Close() error { return s.resp.Body.Close() }

// ReadLog returns every transaction with version in (after, upTo], in order,
// read from one subscription.
func ReadLog(ctx context.Context, hc *http.Client, url string, after, upTo uint64) ([]Txn, error) {
	if upTo <= after {
		return nil, nil
	}
	s, err := Subscribe(ctx, hc, url, after)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var out []Txn
	for {
		t, err := s.NextTxn()
		if err != nil {
			return out, fmt.Errorf("read log (%d, %d] after %d transactions: %w", after, upTo, len(out), err)
		}
		out = append(out, t)
		if t.Version >= upTo {
			return out, nil
		}
	}
}
