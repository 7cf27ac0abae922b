package httpapi

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/config"
	"github.com/weaseldb/weaseldb/engine"
)

// resolverGate holds stage 1 once, on the first batch after arm, until
// release: the real pipeline with a commit taken but not yet resolved.
type resolverGate struct {
	armed   atomic.Bool
	held    chan struct{}
	release chan struct{}
}

func newResolverGate() *resolverGate {
	return &resolverGate{held: make(chan struct{}), release: make(chan struct{})}
}

func (g *resolverGate) hook() {
	if g.armed.CompareAndSwap(true, false) {
		close(g.held)
		<-g.release
	}
}

// TestStatusOfQueuedCommitWhileResolverHeld: a commit is admitted and the
// resolver is held before resolving it. A status query for its request id
// must not answer not_committed (the commit is in flight: API.md), and the
// reactor (there is one) must keep serving other requests meanwhile: the
// status query waits in the pipeline, not on the reactor. Before the fix
// the reactor read the status index directly and answered not_committed.
func TestStatusOfQueuedCommitWhileResolverHeld(t *testing.T) {
	gate := newResolverGate()
	ts := startTestServerEngine(t, config.Default(), engine.Config{BeforeResolveBatch: gate.hook})
	const rid = "queued-commit-request-0001"
	deadline := time.Now().Add(60 * time.Second)

	commitConn := ts.dial(t)
	_ = commitConn.c.SetDeadline(deadline)
	body := fmt.Sprintf(`{"request_id":%q,"operations":[{"type":"write","key":"a2V5","value":"dg=="}]}`, rid)
	gate.armed.Store(true)
	if _, err := fmt.Fprintf(commitConn.c, "POST /v1/commit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gate.held:
	case <-time.After(60 * time.Second):
		t.Fatal("the resolver never took the commit")
	}

	statusConn := ts.dial(t)
	_ = statusConn.c.SetDeadline(deadline)
	if _, err := fmt.Fprintf(statusConn.c, "GET /v1/status?request_id=%s HTTP/1.1\r\nHost: x\r\n\r\n", rid); err != nil {
		t.Fatal(err)
	}

	// The one reactor keeps serving while the resolver is held and a status
	// query waits for it.
	other := ts.dial(t)
	_ = other.c.SetDeadline(deadline)
	for i := range 20 {
		status, body, err := other.roundTrip([]byte("GET /v1/version HTTP/1.1\r\nHost: x\r\n\r\n"))
		if err != nil || status != 200 {
			t.Fatalf("version request %d while the resolver is held: %d %s %v", i, status, body, err)
		}
	}
	close(gate.release)

	status, got, err := statusConn.readAnswer()
	if err != nil || status != 200 {
		t.Fatalf("status: %d %s %v", status, got, err)
	}
	if strings.Contains(string(got), `"not_committed"`) {
		t.Fatalf("status of a queued commit: %s (it was in flight)", got)
	}
	if !strings.Contains(string(got), `"committed"`) && !strings.Contains(string(got), `"in_flight"`) {
		t.Fatalf("status of a queued commit: %s, want committed or in_flight", got)
	}
	status, got, err = commitConn.readAnswer()
	if err != nil || status != 200 || !strings.Contains(string(got), `"committed"`) {
		t.Fatalf("commit: %d %s %v", status, got, err)
	}
	// Once answered, the commit is committed for status too.
	status, got, err = statusConn.roundTrip(fmt.Appendf(nil, "GET /v1/status?request_id=%s HTTP/1.1\r\nHost: x\r\n\r\n", rid))
	if err != nil || status != 200 || !strings.Contains(string(got), `"status":"committed"`) {
		t.Fatalf("status after the commit's answer: %d %s %v", status, got, err)
	}
}
