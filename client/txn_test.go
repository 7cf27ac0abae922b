package client

import (
	"encoding/json"
	"reflect"
	"testing"
)

// fixtureTxn is a typical loadgen commit: two reads, three writes.
func fixtureTxn() *Txn {
	return NewTxn().ReadVersion(42).LeaderID("6f1c0000").
		PointRead([]byte("key1")).
		RangeReadAt([]byte("a"), []byte("b"), 40).
		Write([]byte("key1"), []byte("value-0123456789-0123456789")).
		Delete([]byte("key2")).
		RangeDelete([]byte("x"), []byte("y"))
}

// stdCommit is the same body built for encoding/json: the baseline, and
// the oracle for AppendJSON.
type stdPre struct {
	Type    string  `json:"type"`
	Key     []byte  `json:"key,omitempty"`
	Begin   []byte  `json:"begin,omitempty"`
	End     []byte  `json:"end,omitempty"`
	Version *uint64 `json:"version,omitempty"`
}

type stdOp struct {
	Type  string `json:"type"`
	Key   []byte `json:"key,omitempty"`
	Value []byte `json:"value,omitempty"`
	Begin []byte `json:"begin,omitempty"`
	End   []byte `json:"end,omitempty"`
}

type stdCommit struct {
	RequestID     string   `json:"request_id,omitempty"`
	LeaderID      string   `json:"leader_id,omitempty"`
	ReadVersion   *uint64  `json:"read_version,omitempty"`
	Preconditions []stdPre `json:"preconditions,omitempty"`
	Operations    []stdOp  `json:"operations,omitempty"`
}

func toStd(t *Txn, id string) stdCommit {
	c := stdCommit{RequestID: id, LeaderID: t.leaderID}
	if t.hasReadVersion {
		v := t.readVersion
		c.ReadVersion = &v
	}
	for _, p := range t.preconditions {
		sp := stdPre{Type: string(p.Type)}
		if p.Type == RangeRead {
			sp.Begin, sp.End = p.Key, p.End
		} else {
			sp.Key = p.Key
		}
		if p.HasVersion {
			v := p.Version
			sp.Version = &v
		}
		c.Preconditions = append(c.Preconditions, sp)
	}
	for _, o := range t.operations {
		so := stdOp{Type: string(o.Type)}
		if o.Type == OpRangeDelete {
			so.Begin, so.End = o.Key, o.End
		} else {
			so.Key, so.Value = o.Key, o.Value
		}
		c.Operations = append(c.Operations, so)
	}
	return c
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, tc := range []struct {
		txn *Txn
		id  string
	}{
		{fixtureTxn(), "c1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"},
		{NewTxn(), ""},
		{NewTxn().Write([]byte("k"), []byte("v")), "weird \"id\"\n<&>\xff é"},
	} {
		got := tc.txn.AppendJSON(nil, tc.id)
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("AppendJSON produced invalid JSON %s: %v", got, err)
		}
		want, err := json.Marshal(toStd(tc.txn, tc.id))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("AppendJSON\n%s\nencoding/json\n%s", got, want)
		}
	}
	// An empty value must still be sent (encoding/json's omitempty would drop it).
	if got := string(NewTxn().Write([]byte("k"), nil).AppendJSON(nil, "")); got != `{"operations":[{"type":"write","key":"aw==","value":""}]}` {
		t.Fatalf("empty value: %s", got)
	}
}

func TestAppendJSONAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	txn := fixtureTxn()
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = txn.AppendJSON(buf[:0], "c1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6") }); n != 0 {
		t.Fatalf("AppendJSON allocates %v times per call; want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { txn.Reset().Write(buf[:1], buf[:2]).PointRead(buf[:1]) }); n != 0 {
		t.Fatalf("Reset and rebuild allocate %v times; want 0", n)
	}
}

// BenchmarkAppendJSON measures encoding a typical commit body; the
// baseline is encoding/json on equivalent structs.
//
//	flock /tmp/weaseldb-bench.lock go test -run '^$' -bench AppendJSON -benchtime=1s -count=3 ./client/
func BenchmarkAppendJSON(b *testing.B) {
	txn := fixtureTxn()
	const id = "c1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
	b.Run("impl=append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = txn.AppendJSON(buf[:0], id)
		}
		if len(buf) == 0 {
			b.Fatal("empty body")
		}
	})
	b.Run("impl=encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		var out []byte
		for b.Loop() {
			var err error
			if out, err = json.Marshal(toStd(txn, id)); err != nil {
				b.Fatal(err)
			}
		}
		if len(out) == 0 {
			b.Fatal("empty body")
		}
	})
}
