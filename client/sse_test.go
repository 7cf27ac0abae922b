package client

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func parseAll(t testing.TB, r io.Reader) ([]sseEvent, *sseReader) {
	p := newSSEReader(r)
	var evs []sseEvent
	for {
		ev, err := p.next()
		if errors.Is(err, io.EOF) {
			return evs, p
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		ev.Data = append([]byte(nil), ev.Data...) // valid only until the next call
		evs = append(evs, ev)
	}
}

func TestSSEParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []sseEvent
		retry    time.Duration
		comments int
	}{
		{"lf", "id: 1\nevent: transaction\ndata: {}\n\n", []sseEvent{{Type: "transaction", Data: []byte("{}"), ID: "1"}}, 0, 0},
		{"crlf", "id: 1\r\nevent: transaction\r\ndata: {}\r\n\r\n", []sseEvent{{Type: "transaction", Data: []byte("{}"), ID: "1"}}, 0, 0},
		{"cr", "id: 1\revent: x\rdata: a\r\r", []sseEvent{{Type: "x", Data: []byte("a"), ID: "1"}}, 0, 0},
		{"multiline data", "data: a\ndata:b\ndata:  c\n\n", []sseEvent{{Type: "message", Data: []byte("a\nb\n c")}}, 0, 0},
		{"comments and keep-alive", ": keep-alive\n\n:x\ndata: 1\n\n", []sseEvent{{Type: "message", Data: []byte("1")}}, 0, 2},
		{"retry", "retry: 1500\n\nretry: x1\n\ndata: 1\n\n", []sseEvent{{Type: "message", Data: []byte("1")}}, 1500 * time.Millisecond, 0},
		{"id persists, NUL id ignored", "id: 7\ndata: a\n\nid: 8\x00\ndata: b\n\n", []sseEvent{{Type: "message", Data: []byte("a"), ID: "7"}, {Type: "message", Data: []byte("b"), ID: "7"}}, 0, 0},
		{"no data: no dispatch", "event: checkpoint\n\ndata: z\n\n", []sseEvent{{Type: "message", Data: []byte("z")}}, 0, 0},
		{"field without colon", "data\n\n", []sseEvent{{Type: "message", Data: []byte("")}}, 0, 0},
		{"unknown field ignored", "foo: bar\ndata: q\n\n", []sseEvent{{Type: "message", Data: []byte("q")}}, 0, 0},
		{"partial event at EOF dropped", "data: a\n\ndata: b", []sseEvent{{Type: "message", Data: []byte("a")}}, 0, 0},
		{"partial event with line end dropped", "data: a\n\ndata: b\n", []sseEvent{{Type: "message", Data: []byte("a")}}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []string{"whole", "one byte", "half"} {
				var r io.Reader = strings.NewReader(tc.in)
				switch mode {
				case "one byte":
					r = iotest.OneByteReader(r)
				case "half":
					r = iotest.HalfReader(r)
				}
				got, p := parseAll(t, r)
				for i := range got {
					if len(got[i].Data) == 0 {
						got[i].Data = []byte("")
					}
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("%s: got %q; want %q", mode, got, tc.want)
				}
				if p.retry != tc.retry || p.comments != tc.comments {
					t.Fatalf("%s: retry %v comments %d; want %v %d", mode, p.retry, p.comments, tc.retry, tc.comments)
				}
			}
		})
	}
}

// TestSSECRLFSplitAcrossReads: a CR at the end of one read and its LF at the
// start of the next must make one line end, not two (which would dispatch
// an event early).
func TestSSECRLFSplitAcrossReads(t *testing.T) {
	r := io.MultiReader(strings.NewReader("data: a\r"), strings.NewReader("\ndata: b\r"), strings.NewReader("\n\r\n"))
	got, _ := parseAll(t, r)
	if len(got) != 1 || string(got[0].Data) != "a\nb" {
		t.Fatalf("got %q; want one event with data a\\nb", got)
	}
}

// refParseSSE is a deliberately dumb oracle: normalise line ends, split,
// and follow the standard's steps literally.
func refParseSSE(in string) []sseEvent {
	in = strings.ReplaceAll(in, "\r\n", "\n")
	in = strings.ReplaceAll(in, "\r", "\n")
	lines := strings.Split(in, "\n")
	lines = lines[:len(lines)-1] // the last piece has no line end: dropped
	var out []sseEvent
	data, typ, id := "", "", ""
	for _, l := range lines {
		if l == "" {
			if data != "" {
				typ2 := typ
				if typ2 == "" {
					typ2 = "message"
				}
				out = append(out, sseEvent{Type: typ2, Data: []byte(strings.TrimSuffix(data, "\n")), ID: id})
			}
			data, typ = "", ""
			continue
		}
		if l[0] == ':' {
			continue
		}
		name, value, found := strings.Cut(l, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch name {
		case "data":
			data += value + "\n"
		case "event":
			typ = value
		case "id":
			if !strings.Contains(value, "\x00") {
				id = value
			}
		}
	}
	return out
}

func FuzzSSEParse(f *testing.F) {
	f.Add("id: 1\r\nevent: transaction\r\ndata: {}\r\n\r\n", uint8(1))
	f.Add("data: a\rdata: b\r\r: c\n\nretry: 10\n\n", uint8(2))
	f.Add("data\n\nevent\n\n:\n\ndata:\xff\x00\n\n", uint8(7))
	f.Add("id: a\x00b\ndata: x\r\n\r", uint8(3))
	f.Fuzz(func(t *testing.T, in string, chunk uint8) {
		if len(in) > 4096 {
			return
		}
		want := refParseSSE(in)
		// Chunked reads must not change the result.
		n := int(chunk%16) + 1
		var parts []io.Reader
		for i := 0; i < len(in); i += n {
			parts = append(parts, strings.NewReader(in[i:min(i+n, len(in))]))
		}
		got, _ := parseAll(t, io.MultiReader(parts...))
		if len(got) != len(want) {
			t.Fatalf("input %q: got %d events %q; oracle %d %q", in, len(got), got, len(want), want)
		}
		for i := range got {
			if got[i].Type != want[i].Type || got[i].ID != want[i].ID || !bytes.Equal(got[i].Data, want[i].Data) {
				t.Fatalf("input %q event %d: got %q; oracle %q", in, i, got[i], want[i])
			}
		}
	})
}
