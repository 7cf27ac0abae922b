package jsonstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/bytedance/sonic"

	"github.com/weaseldb/weaseldb/arena"
	"github.com/weaseldb/weaseldb/tx"
)

// benchBody builds the commit bodies of issue 2: small = 1 point_read + 1
// write, medium = 10 + 10, large = 1,000 operations (and 1,000
// point_reads); 16-byte keys, 100-byte values.
func benchBody(size string) []byte {
	n := map[string]int{"small": 1, "medium": 10, "large": 1000}[size]
	var b bytes.Buffer
	b.WriteString(`{"request_id":"bench-0123456789abcdef-0001","leader_id":"6f1c0a9d3b2e4f50","read_version":123456789,"preconditions":[`)
	key := make([]byte, 16)
	value := make([]byte, 100)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		copy(key, fmt.Sprintf("key-%012d", i))
		fmt.Fprintf(&b, `{"type":"point_read","key":%q}`, base64.StdEncoding.EncodeToString(key))
	}
	b.WriteString(`],"operations":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		copy(key, fmt.Sprintf("key-%012d", i))
		for j := range value {
			value[j] = byte(i + j)
		}
		fmt.Fprintf(&b, `{"type":"write","key":%q,"value":%q}`,
			base64.StdEncoding.EncodeToString(key), base64.StdEncoding.EncodeToString(value))
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// wireCommit is the struct sonic and encoding/json decode into; the
// baselines then base64-decode keys and values into a tx.Commit, so that
// every contender ends with the same decoded commit.
type wireCommit struct {
	RequestID     string  `json:"request_id"`
	LeaderID      string  `json:"leader_id"`
	ReadVersion   *uint64 `json:"read_version"`
	Preconditions []struct {
		Type    string  `json:"type"`
		Key     string  `json:"key"`
		Begin   string  `json:"begin"`
		End     string  `json:"end"`
		Version *uint64 `json:"version"`
	} `json:"preconditions"`
	Operations []struct {
		Type  string `json:"type"`
		Key   string `json:"key"`
		Value string `json:"value"`
		Begin string `json:"begin"`
		End   string `json:"end"`
	} `json:"operations"`
}

func decodeB64(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// toCommit converts the decoded struct the way a handler built on a
// generic decoder would (and allocates as such a handler would).
func (w *wireCommit) toCommit(c *tx.Commit) {
	c.Reset()
	c.RequestID, c.LeaderID = []byte(w.RequestID), []byte(w.LeaderID)
	if w.ReadVersion != nil {
		c.ReadVersion, c.HasReadVersion = tx.Version(*w.ReadVersion), true
	}
	for _, p := range w.Preconditions {
		pc := tx.Precondition{Type: tx.PointRead, Key: decodeB64(p.Key)}
		if p.Type == "range_read" {
			pc = tx.Precondition{Type: tx.RangeRead, Key: decodeB64(p.Begin), End: decodeB64(p.End)}
		}
		if p.Version != nil {
			pc.Version, pc.HasVersion = tx.Version(*p.Version), true
		}
		c.Preconditions = append(c.Preconditions, pc)
	}
	for _, o := range w.Operations {
		c.Operations = append(c.Operations, tx.Operation{Type: tx.OpWrite, Key: decodeB64(o.Key), Value: decodeB64(o.Value)})
	}
}

// BenchmarkParseCommit compares the streaming parser (whole body in one
// Write, reused Parser/Arena/Commit) with sonic and encoding/json decoding
// into wireCommit plus base64 decoding. Each iteration checks the number of
// operations decoded. Run:
//
//	flock /tmp/weaseldb-bench.lock go test -run '^$' -bench ParseCommit -benchtime=1s -count=3 ./jsonstream/
func BenchmarkParseCommit(b *testing.B) {
	for _, size := range []string{"small", "medium", "large"} {
		body := benchBody(size)
		var want int
		{
			var c tx.Commit
			if err := NewParser(Limits{}).Parse(arena.New(0), &c, body); err != nil {
				b.Fatal(err)
			}
			want = len(c.Operations)
		}
		b.Run(size+"/jsonstream", func(b *testing.B) {
			p, a, c := NewParser(Limits{}), arena.New(0), &tx.Commit{}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				a.Reset()
				if err := p.Parse(a, c, body); err != nil || len(c.Operations) != want {
					b.Fatal(err)
				}
			}
		})
		b.Run(size+"/sonic", func(b *testing.B) {
			var c tx.Commit
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var w wireCommit
				if err := sonic.Unmarshal(body, &w); err != nil {
					b.Fatal(err)
				}
				w.toCommit(&c)
				if len(c.Operations) != want {
					b.Fatal("wrong operation count")
				}
			}
		})
		b.Run(size+"/encoding_json", func(b *testing.B) {
			var c tx.Commit
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var w wireCommit
				if err := json.Unmarshal(body, &w); err != nil {
					b.Fatal(err)
				}
				w.toCommit(&c)
				if len(c.Operations) != want {
					b.Fatal("wrong operation count")
				}
			}
		})
	}
}

// benchTransaction is a transaction of 10 writes with 16-byte keys and
// 100-byte values.
func benchTransaction() *tx.Transaction {
	t := &tx.Transaction{Version: 123456790, RequestID: []byte("bench-0123456789abcdef-0001"), TimestampUnixNano: 1795629600123456789}
	for i := 0; i < 10; i++ {
		key := []byte(fmt.Sprintf("key-%012d", i))
		t.Operations = append(t.Operations, tx.Operation{Type: tx.OpWrite, Key: key, Value: bytes.Repeat([]byte{byte(i)}, 100)})
	}
	return t
}

// wireEvent is what sonic and encoding/json marshal for the event; []byte
// fields become base64 as in our encoder, and the timestamp is formatted
// with time.AppendFormat, as a handler built on them would.
type wireEvent struct {
	Version     uint64   `json:"version"`
	PrevVersion uint64   `json:"prev_version"`
	RequestID   string   `json:"request_id"`
	Timestamp   string   `json:"timestamp"`
	LeaderID    string   `json:"leader_id"`
	Operations  []wireOp `json:"operations"`
}

type wireOp struct {
	Type  string `json:"type"`
	Key   []byte `json:"key,omitempty"`
	Value []byte `json:"value,omitempty"`
	Begin []byte `json:"begin,omitempty"`
	End   []byte `json:"end,omitempty"`
}

// BenchmarkTransactionEvent compares AppendTransactionEvent (reused buffer)
// with building the equivalent struct and marshalling it with sonic and
// encoding/json.
//
//	flock /tmp/weaseldb-bench.lock go test -run '^$' -bench TransactionEvent -benchtime=1s -count=3 ./jsonstream/
func BenchmarkTransactionEvent(b *testing.B) {
	t := benchTransaction()
	leader := []byte("6f1c0a9d3b2e4f50")
	want := len(AppendTransactionEvent(nil, t, 1, leader))
	toWire := func() *wireEvent {
		w := &wireEvent{Version: uint64(t.Version), PrevVersion: 1, RequestID: string(t.RequestID),
			Timestamp: time.Unix(0, t.TimestampUnixNano).UTC().Format("2006-01-02T15:04:05.000Z07:00"), LeaderID: string(leader)}
		for _, op := range t.Operations {
			w.Operations = append(w.Operations, wireOp{Type: op.Type.String(), Key: op.Key, Value: op.Value})
		}
		return w
	}
	b.Run("jsonstream", func(b *testing.B) {
		buf := make([]byte, 0, 4096)
		b.SetBytes(int64(want))
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendTransactionEvent(buf[:0], t, 1, leader)
			if len(buf) != want {
				b.Fatal("wrong length")
			}
		}
	})
	b.Run("sonic", func(b *testing.B) {
		b.SetBytes(int64(want))
		b.ReportAllocs()
		for b.Loop() {
			out, err := sonic.Marshal(toWire())
			if err != nil || len(out) != want {
				b.Fatal(err, len(out), want)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(want))
		b.ReportAllocs()
		for b.Loop() {
			out, err := json.Marshal(toWire())
			if err != nil || len(out) != want {
				b.Fatal(err, len(out), want)
			}
		}
	})
}
