package tests

import (
	"strings"
	"testing"
)

// TestLoneSurrogateRequestID: "\ud800-…" and "\udbff-…" used to decode to
// the same request_id (U+FFFD), so the second commit was answered
// duplicate: true though its write was never applied (issue 12, item 10).
// A lone surrogate in any JSON string is a 400 naming the field.
func TestLoneSurrogateRequestID(t *testing.T) {
	s := startServer(t, spec{})
	for _, body := range []string{
		`{"request_id":"\ud800-lone-surrogate-0001","operations":[{"type":"write","key":"YQ==","value":"MQ=="}]}`,
		`{"request_id":"\udbff-lone-surrogate-0001","operations":[{"type":"write","key":"YQ==","value":"Mg=="}]}`,
		`{"request_id":"lone-surrogate-0001-\udc00","operations":[]}`,
	} {
		status, o := s.commitRaw(body)
		wantError(t, body, status, o, 400, "bad_request")
		if !strings.Contains(o.str("message"), "request_id") || !strings.Contains(o.str("message"), "surrogate") {
			t.Errorf("%s: message %q must name request_id and the lone surrogate", body, o.str("message"))
		}
	}
	status, o := s.commitRaw(`{"operations":[{"type":"write","key":"\ud800","value":""}]}`)
	wantError(t, "lone surrogate in a key", status, o, 400, "bad_request")
	if !strings.Contains(o.str("message"), "operations[0].key") {
		t.Errorf("message %q must name operations[0].key", o.str("message"))
	}
	// A proper pair is a character like any other.
	status, o = s.commitRaw(`{"request_id":"\ud83d\ude00-pair-0123456789abcdef","operations":[]}`)
	wantCommitted(t, "request_id with a surrogate pair", status, o)
	if v := s.version(); v != 1 {
		t.Errorf("version %d after refused bodies and one commit, want 1", v)
	}
}
