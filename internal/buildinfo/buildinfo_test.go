package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestLine(t *testing.T) {
	i := Info{Version: "1.2.3", Revision: "0123456789abcdef0123", Time: "2026-12-06T16:00:00Z", Modified: true, GoVersion: "go1.99"}
	if got, want := i.Line("weaseldb"), "weaseldb 1.2.3 (revision 0123456789ab+dirty, 2026-12-06T16:00:00Z, go1.99)"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
	r := Read("x", "")
	if r.Version != "x" || r.GoVersion != runtime.Version() || r.Revision == "" {
		t.Errorf("Read: %+v", r)
	}
	if !strings.HasPrefix(r.Line("w"), "w x (revision ") {
		t.Errorf("Read line %q", r.Line("w"))
	}
}
