package jsonstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/tx"
)

func TestAppendStringRoundTrip(t *testing.T) {
	rng := newRand(t)
	cases := [][]byte{nil, []byte(""), []byte(`"\/` + "\x00\x01\b\f\n\r\t\x1f\x7f"), []byte("é😀\u2028"), []byte("bad\xff\xfeutf8\xc3")}
	for i := 0; i < 2000; i++ {
		b := make([]byte, rng.IntN(20))
		for j := range b {
			const alphabet = "a\"\\\x00\n\x1f\xc3\xa9\xff\xe2\x82\xac~"
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, b)
	}
	for _, s := range cases {
		out := AppendString(nil, s)
		var got, want string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("AppendString(%q) = %s: not JSON: %v", s, out, err)
		}
		ref, _ := json.Marshal(string(s))
		json.Unmarshal(ref, &want)
		if got != want {
			t.Fatalf("AppendString(%q) = %s decodes to %q, encoding/json gives %q", s, out, got, want)
		}
	}
}

func TestAppendBase64(t *testing.T) {
	for n := 0; n < 40; n++ {
		b := bytes.Repeat([]byte{0xfb, 0x01, 0x7f}, n)[:n]
		got := AppendBase64([]byte("x"), b)
		if want := "x" + base64.StdEncoding.EncodeToString(b); string(got) != want {
			t.Fatalf("AppendBase64(%x) = %s, want %s", b, got, want)
		}
	}
}

func TestAppendTimestamp(t *testing.T) {
	rng := newRand(t)
	const layout = "2006-01-02T15:04:05.000Z07:00"
	cases := []int64{0, -1, 1, 999_999, 1_000_000, -86400e9, 951782400e9 /* 2000-02-29 */, 4102444800e9 - 1, time.Date(2026, 11, 25, 18, 0, 0, 123e6, time.UTC).UnixNano(), -9223372036854775808, 9223372036854775807, 1 << 62, -1 << 62}
	n := 100000
	if testing.Short() {
		n = 5000
	}
	for i := 0; i < n; i++ {
		cases = append(cases, rng.Int64N(1<<63-1)-rng.Int64N(1<<63-1))
	}
	for _, ns := range cases {
		got := string(AppendTimestamp(nil, ns))
		if want := time.Unix(0, ns).UTC().Format(layout); got != want {
			t.Fatalf("AppendTimestamp(%d) = %s, want %s", ns, got, want)
		}
	}
}

func TestAppendTransactionEvent(t *testing.T) {
	ts := time.Date(2026, 11, 25, 18, 0, 0, 123456789, time.UTC).UnixNano()
	txn := &tx.Transaction{Version: 43, RequestID: []byte("c1b2"), TimestampUnixNano: ts, Operations: []tx.Operation{
		{Type: tx.OpWrite, Key: []byte("key1"), Value: []byte("value")},
		{Type: tx.OpDelete, Key: []byte("key2")},
		{Type: tx.OpRangeDelete, Key: []byte("x"), End: []byte("y")},
	}}
	got := string(AppendTransactionEvent(nil, txn, 42, []byte("6f1c")))
	want := `{"version":43,"prev_version":42,"request_id":"c1b2","timestamp":"2026-11-25T18:00:00.123Z","leader_id":"6f1c","operations":[` +
		`{"type":"write","key":"a2V5MQ==","value":"dmFsdWU="},{"type":"delete","key":"a2V5Mg=="},{"type":"range_delete","begin":"eA==","end":"eQ=="}]}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	empty := string(AppendTransactionEvent(nil, &tx.Transaction{Version: 1}, 0, nil))
	if !json.Valid([]byte(empty)) {
		t.Fatalf("empty transaction: invalid JSON %s", empty)
	}
}

func TestAppendCommitAnswer(t *testing.T) {
	got := string(AppendCommitAnswer(nil, CommitAnswer{RequestID: []byte("r1"), Status: StatusCommitted, Version: 43, LeaderID: []byte("L")}))
	if want := `{"request_id":"r1","status":"committed","version":43,"leader_id":"L"}`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	for _, r := range []Reason{ReasonConflict, ReasonTooOld, ReasonLeaderChanged} {
		out := AppendCommitAnswer(nil, CommitAnswer{RequestID: []byte("r\"2"), Status: StatusNotCommitted, Reason: r,
			Version: 57, LeaderID: []byte("L"), Conflicts: []int{1, 3}, Duplicate: true})
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		want := map[string]any{"request_id": "r\"2", "status": "not_committed", "reason": r.String(), "version": 57.0,
			"leader_id": "L", "duplicate": true, "error": "conflict", "message": r.message()}
		if r == ReasonConflict {
			want["conflicts"] = []any{1.0, 3.0}
		}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("reason %v:\n got  %v\n want %v", r, m, want)
		}
	}
	if got := string(AppendError(nil, "bad_request", []byte(`operations[3].key: invalid base64`))); got != `{"error":"bad_request","message":"operations[3].key: invalid base64"}` {
		t.Fatalf("AppendError = %s", got)
	}
	if got := string(AppendVersionAnswer(nil, 42, []byte("L"))); got != `{"version":42,"leader_id":"L"}` {
		t.Fatalf("AppendVersionAnswer = %s", got)
	}
	for s, want := range map[RequestStatus]string{
		RequestCommitted:    `{"request_id":"ID","status":"committed","version":43}`,
		RequestInFlight:     `{"request_id":"ID","status":"in_flight"}`,
		RequestNotCommitted: `{"request_id":"ID","status":"not_committed"}`,
	} {
		if got := string(AppendStatusAnswer(nil, []byte("ID"), s, 43)); got != want {
			t.Fatalf("AppendStatusAnswer(%d) = %s, want %s", s, got, want)
		}
	}
	if got := string(AppendCheckpointEvent(nil, 57, []byte("L"))); got != `{"committed_version":57,"leader_id":"L"}` {
		t.Fatalf("AppendCheckpointEvent = %s", got)
	}
}

func TestEncodeNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	txn := benchTransaction()
	buf := make([]byte, 0, 1<<16)
	ans := CommitAnswer{RequestID: []byte("r1"), Status: StatusNotCommitted, Reason: ReasonConflict, Conflicts: []int{1, 2}, Version: 9, LeaderID: []byte("L")}
	n := testing.AllocsPerRun(100, func() {
		buf = AppendTransactionEvent(buf[:0], txn, 1, []byte("6f1c0a9d3b2e4f50"))
		buf = AppendCommitAnswer(buf[:0], ans)
		buf = AppendError(buf[:0], "bad_request", []byte("x"))
	})
	if n != 0 {
		t.Fatalf("%.1f allocations per encode", n)
	}
}

var _ = rand.IntN
