package jsonstream_test

import (
	"errors"
	"fmt"

	"github.com/weaseldb/weaseldb/arena"
	"github.com/weaseldb/weaseldb/jsonstream"
	"github.com/weaseldb/weaseldb/tx"
)

// A connection keeps one Parser, Arena and Commit, and feeds each body as
// it arrives.
func ExampleParser() {
	p := jsonstream.NewParser(jsonstream.Limits{}) // API.md defaults
	a := arena.New(256 << 10)
	var commit tx.Commit

	pieces := []string{`{"read_version":42,"operations":[{"type":"wri`, `te","key":"a2V5","value":"dmFs"}]}`}
	p.Reset(a, &commit)
	for _, piece := range pieces {
		if err := p.Write([]byte(piece)); err != nil {
			fmt.Println(err)
			return
		}
	}
	if err := p.Finish(); err != nil {
		fmt.Println(err)
		return
	}
	op := commit.Operations[0]
	fmt.Printf("%s %s=%s at read version %d\n", op.Type, op.Key, op.Value, commit.ReadVersion)

	// After the answer is written, the request's memory is recycled.
	a.Reset()
	err := p.Parse(a, &commit, []byte(`{"operations":[{"type":"delete","key":"!"}]}`))
	var e *jsonstream.Error
	if errors.As(err, &e) {
		fmt.Printf("%s (%s)\n", e, e.Kind) // Kind picks 400 or 413
	}
	// Output:
	// write key=val at read version 42
	// operations[0].key: invalid base64 (length 1 is not a multiple of 4) (bad_request)
}
