package jsonstream

import (
	"strings"
	"testing"

	"github.com/weaseldb/weaseldb/arena"
	"github.com/weaseldb/weaseldb/tx"
)

// FuzzParseCommit is differential: the parser and refParse (encoding/json +
// encoding/base64 + the API.md rules) must agree on accept/reject and on the
// decoded commit. Small limits let the fuzzer reach every limit. The body
// is also fed split at a fuzzer-chosen point and in 1..16-byte pieces; every
// way must give the whole-body result.
//
//	go test -run '^$' -fuzz FuzzParseCommit -fuzztime 30s ./jsonstream/
func FuzzParseCommit(f *testing.F) {
	for _, tc := range validDocs {
		f.Add([]byte(tc.doc), uint16(len(tc.doc)/2), uint8(3))
	}
	for _, tc := range invalidDocs {
		if len(tc.doc) < 1000 {
			f.Add([]byte(tc.doc), uint16(len(tc.doc)/3), uint8(1))
		}
	}
	lim := Limits{MaxBodyBytes: 4096, MaxKeyBytes: 8, MaxValueBytes: 20, MaxPreconditions: 4, MaxOperations: 4}
	p, a, c := NewParser(lim), arena.New(512), &tx.Commit{}
	f.Fuzz(func(t *testing.T, doc []byte, split uint16, step uint8) {
		whole := outcome(c, parseChunks(p, a, c, [][]byte{doc}))
		ref, err := refParse(doc, lim)
		if want := outcome(ref, err); (err == nil) == strings.HasPrefix(whole, "error: ") || (err == nil && want != whole) {
			t.Fatalf("doc %q:\n parser    %s\n reference %s", doc, whole, want)
		}
		i := int(split) % (len(doc) + 1)
		if got := outcome(c, parseChunks(p, a, c, [][]byte{doc[:i], doc[i:]})); got != whole {
			t.Fatalf("doc %q split at %d:\n got  %s\n want %s", doc, i, got, whole)
		}
		n := int(step%16) + 1
		var pieces [][]byte
		for rest := doc; len(rest) > 0; rest = rest[min(n, len(rest)):] {
			pieces = append(pieces, rest[:min(n, len(rest))])
		}
		if got := outcome(c, parseChunks(p, a, c, pieces)); got != whole {
			t.Fatalf("doc %q in %d-byte pieces:\n got  %s\n want %s", doc, n, got, whole)
		}
	})
}
