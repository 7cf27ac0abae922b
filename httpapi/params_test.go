package httpapi

import (
	"net/url"
	"strings"
	"testing"
)

func TestCheckQuery(t *testing.T) {
	for _, c := range []struct {
		raw, want string // want: "" or a prefix of the message
	}{
		{"", ""},
		{"after=3", ""},
		{"after=3&durable=false&begin=YQ%3D%3D&end=Yg%3D%3D", ""},
		{"after=3&", ""},
		{"&&after=3", ""},
		{"durable", ""}, // empty value: the handler refuses it, naming durable
		{"aftr=3", "aftr: unknown query parameter (this endpoint takes after, durable, begin, end)"},
		{"after=3&after=4", "after: query parameter given more than once"},
		{"after=3&x", "x: unknown"},
		{"=3", "query: a parameter without a name (\"=3\")"},
		{"%61fter=3", `"%61fter": unknown`},
		{"af+ter=3", `"af+ter": unknown`},
		{"\x00=1", `"\x00": unknown`},
	} {
		got := checkQuery([]byte(c.raw), paramsSubscribe)
		if c.want == "" && got != "" || c.want != "" && !strings.HasPrefix(got, c.want) {
			t.Errorf("checkQuery(%q) = %q, want %q", c.raw, got, c.want)
		}
	}
	if got := checkQuery([]byte("x=1"), paramsNone); got != "x: unknown query parameter (this endpoint takes no query parameters)" {
		t.Errorf("no-parameter route: %q", got)
	}
	if raceEnabled {
		return
	}
	if n := testing.AllocsPerRun(100, func() { checkQuery([]byte("after=3&durable=1&begin=YQ%3D%3D"), paramsSubscribe) }); n != 0 {
		t.Errorf("checkQuery allocates %v times on an accepted query", n)
	}
}

// FuzzCheckQuery checks checkQuery against net/url.ParseQuery: what it
// accepts has only defined names, each once, with the values url reads;
// what url reads as an unknown or repeated name, checkQuery refuses.
func FuzzCheckQuery(f *testing.F) {
	for _, s := range []string{"", "after=3", "after=1&after=2", "aftr=3", "after=3&durable=false&begin=YQ%3D%3D&end=",
		"%61fter=1", "=", "&", "a&&b", "after=%zz", "durable", "after=1;durable=2", "begin=+/", "\xff=\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > 4096 {
			return
		}
		msg := checkQuery([]byte(raw), paramsSubscribe)
		vals, err := url.ParseQuery(raw)
		if msg == "" {
			seen := map[string]bool{}
			for _, pair := range strings.Split(raw, "&") {
				if pair == "" {
					continue
				}
				name, _, _ := strings.Cut(pair, "=")
				if seen[name] {
					t.Fatalf("accepted %q: %q twice", raw, name)
				}
				seen[name] = true
				if !defined(name) {
					t.Fatalf("accepted %q: unknown name %q", raw, name)
				}
			}
			if err != nil {
				return // url refuses ';' and bad escapes, which values may hold
			}
			for name, vs := range vals {
				if len(vs) != 1 || !defined(name) {
					t.Fatalf("accepted %q, which url reads as %v", raw, vals)
				}
			}
			return
		}
		if err == nil {
			bad := false
			for name, vs := range vals {
				bad = bad || len(vs) > 1 || !defined(name)
			}
			for _, pair := range strings.Split(raw, "&") {
				name, _, _ := strings.Cut(pair, "=")
				bad = bad || pair != "" && (name == "" || strings.ContainsAny(name, "%+"))
			}
			if !bad {
				t.Fatalf("refused %q (%s), which url reads as %v", raw, msg, vals)
			}
		}
		if !strings.Contains(msg, ": ") {
			t.Fatalf("message %q does not name the parameter", msg)
		}
	})
}

func defined(name string) bool {
	for _, p := range paramsSubscribe {
		if p == name {
			return true
		}
	}
	return false
}

func TestParsePolicyBodyMessages(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`{"version":7}`, ""},
		{` { "version" : 0 } `, ""},
		{``, `body: empty (want {"version": V})`},
		{`{}`, `version: missing (want {"version": V})`},
		{`{"version":"1"}`, "version: must be an unsigned 64-bit decimal integer"},
		{`{"version":-1}`, "version: must be an unsigned 64-bit decimal integer"},
		{`{"version":1.5}`, "version: must be an unsigned 64-bit decimal integer"},
		{`{"version":null}`, "version: must be an unsigned 64-bit decimal integer"},
		{`{"version":1,"x":2}`, `x: unknown field (want {"version": V})`},
		{`{"version":1,"version":2}`, "version: given more than once"},
		{`[1]`, `body: must be a JSON object (want {"version": V})`},
		{`{"version":1} {}`, "body: unexpected data after the JSON object"},
		{`{"version":1`, `body: ends before the JSON object does (want {"version": V})`},
		{`{"version":}`, `body: invalid JSON at byte *`}, // the offset is encoding/json's
		{`{"version":1}x`, "body: unexpected data after the JSON object"},
	} {
		_, got := parsePolicyBody([]byte(c.body))
		if prefix, ok := strings.CutSuffix(c.want, "*"); ok && strings.HasPrefix(got, prefix) {
			continue
		}
		if got != c.want {
			t.Errorf("parsePolicyBody(%q) = %q, want %q", c.body, got, c.want)
		}
		if strings.Contains(got, "json:") || strings.Contains(got, "EOF") {
			t.Errorf("parsePolicyBody(%q): Go internals in %q", c.body, got)
		}
	}
}
