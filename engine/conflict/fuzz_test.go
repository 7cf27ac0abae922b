package conflict

import (
	"testing"

	"github.com/weaseldb/weaseldb/tx"
)

// FuzzSetVsModel decodes the input into an op stream and replays it on Set
// and Model, eagerly sweeping and rebuilding or not; any disagreement or
// broken invariant fails.
func FuzzSetVsModel(f *testing.F) {
	f.Add([]byte{0, 1, 'a', 1, 2, 'a', 'b', 2, 1})
	f.Add([]byte{1, 0, 5, 0xff, 0xff, 0xff, 0, 0, 7, 2, 9, 0, 0})
	f.Add([]byte{1, 2, 'a', 2, 'a', 0, 1, 1, 'a', 0, 1, 'a', 5, 2, 200, 0, 1, 'a', 0})
	f.Add([]byte("\x01\x03abc\x03abd\x01\x01b\x02\x04\x00\x05ab\x00z\x02"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		ops := decodeOps(data)
		for _, eager := range []bool{false, true} {
			if msg := replay(0, eager, ops); msg != "" {
				t.Fatalf("eager=%v: %s", eager, msg)
			}
		}
	})
}

// decodeOps turns bytes into a valid op stream: each op starts with a kind
// byte; keys are a length byte (mod 6) and that many bytes; versions only
// grow.
func decodeOps(data []byte) []op {
	next := tx.Version(1)
	oldest := tx.Version(0)
	take := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	key := func() []byte {
		n := int(take()) % 6
		n = min(n, len(data))
		k := append([]byte{}, data[:n]...)
		data = data[n:]
		return k
	}
	var ops []op
	for len(data) > 0 && len(ops) < 256 {
		switch kind := take(); kind % 3 {
		case 0: // check: begin, end (empty end: point), version offset
			b, e := key(), key()
			v := oldest + tx.Version(take())%(next-oldest+1)
			if take()%5 == 0 && oldest > 0 {
				v = oldest - 1
			}
			ops = append(ops, op{kind: opCheck, reads: []Read{{Begin: b, End: e, Version: v}}})
		case 1: // write: count, then begin/end pairs
			o := op{kind: opWrite, version: next}
			for range take() % 4 {
				o.writes = append(o.writes, Write{Begin: key(), End: key()})
			}
			next += 1 + tx.Version(kind>>6)
			ops = append(ops, o)
		case 2: // oldest: advance by a byte
			v := oldest + tx.Version(take())%(next-oldest+1)
			oldest = max(oldest, v)
			if oldest >= next {
				next = oldest + 1
			}
			ops = append(ops, op{kind: opOldest, version: v})
		}
	}
	return ops
}
