package client_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/client"
)

// replicaFront stands in for a replica until replicas exist: it answers
// every request 307 with Location on the leader (same path and query) and
// the body API.md gives, as a replica does for commits, status queries and
// retention changes. It records the Authorization header of each request.
type replicaFront struct {
	*httptest.Server
	mu    sync.Mutex
	auths []string // guarded by mu
	hits  atomic.Int64
}

func newReplicaFront(t *testing.T, leaderURL string) *replicaFront {
	f := &replicaFront{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		f.mu.Lock()
		f.auths = append(f.auths, r.Header.Get("Authorization"))
		f.mu.Unlock()
		w.Header().Set("Location", leaderURL+r.URL.RequestURI())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTemporaryRedirect)
		fmt.Fprintf(w, `{"error":"not_leader","message":"this server is a replica","leader_url":%q}`, leaderURL)
	}))
	t.Cleanup(f.Close)
	return f
}

// Endpoints: a down server first, then a replica that redirects to the
// leader. Every call must reach the leader with the token (the server has
// one), a commit that could not connect is sent again (not resolved as an
// answer lost), and later requests go straight to the leader.
func TestEndpointsDownThenRedirectingReplica(t *testing.T) {
	const token = "failover-test-token-0001"
	leader := realServer(t, "WEASELDB_AUTH_TOKEN="+token)
	front := newReplicaFront(t, leader.URL)
	ctx := ctxT(t)
	c := client.New(downURL(t)+","+front.URL, client.WithAuthToken(token), client.WithMaxAttempts(3))

	res, err := c.Commit(ctx, client.NewTxn().Write([]byte("k"), []byte("v")))
	if err != nil {
		t.Fatalf("commit via down + replica: %v", err)
	}
	if res.Resolved || res.Duplicate || res.Version != 1 {
		t.Fatalf("commit = %+v; want a plain answer at version 1 (a refused connection is not a lost answer)", res)
	}
	if front.hits.Load() != 1 {
		t.Fatalf("replica asked %d times; want 1 (then the leader directly)", front.hits.Load())
	}
	front.mu.Lock()
	if front.auths[0] != "Bearer "+token {
		t.Fatalf("the replica got Authorization %q", front.auths[0])
	}
	front.mu.Unlock()
	// The leader is remembered: nothing more goes through the replica.
	if st, err := c.Status(ctx, res.RequestID, 0); err != nil || st.Status != client.StatusCommitted {
		t.Fatalf("status: %+v, %v", st, err)
	}
	if _, err := c.PutPolicy(ctx, "p", 1); err != nil {
		t.Fatalf("retention: %v", err)
	}
	if front.hits.Load() != 1 {
		t.Fatalf("replica asked %d times after the leader was known", front.hits.Load())
	}

	// A fresh client starting on the replica follows the 307 for every
	// kind of request, method and body kept.
	c2 := client.New(front.URL, client.WithAuthToken(token))
	if _, err := c2.Status(ctx, res.RequestID, 0); err != nil {
		t.Fatalf("status via replica: %v", err)
	}
	c3 := client.New(front.URL, client.WithAuthToken(token))
	if p, err := c3.PutPolicy(ctx, "q", 1); err != nil || p.Version != 1 {
		t.Fatalf("PUT via replica: %+v, %v", p, err)
	}
	c4 := client.New(front.URL, client.WithAuthToken(token))
	res2, err := c4.Commit(ctx, client.NewTxn().ReadVersion(1).PointRead([]byte("k")).Write([]byte("k"), []byte("w")))
	if err != nil || res2.Version != 2 || res2.Resolved {
		t.Fatalf("commit via replica: %+v, %v", res2, err)
	}

	// Only down servers: the error names them.
	down := downURL(t)
	_, err = client.New(down, client.WithMaxAttempts(2)).Version(ctx)
	if err == nil || !strings.Contains(err.Error(), down) {
		t.Fatalf("error with a down server: %v; want it to name %s", err, down)
	}
}

// lossyFront forwards commits to the leader and then drops the connection
// without answering (the answer is lost, the commit happened); everything
// else it redirects, like a replica.
func newLossyFront(t *testing.T, leaderURL string) (*httptest.Server, *atomic.Int64) {
	commits := new(atomic.Int64)
	target, _ := url.Parse(leaderURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/commit" {
			w.Header().Set("Location", leaderURL+r.URL.RequestURI())
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		commits.Add(1)
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv, commits
}

// A commit whose answer is lost is resolved with /v1/status on the leader
// (reached through the replica's 307), never by a blind resend: the log
// holds it once and the result says Resolved.
func TestLostCommitAnswerResolvedOnLeader(t *testing.T) {
	leader := realServer(t)
	front, commits := newLossyFront(t, leader.URL)
	ctx := ctxT(t)
	c := client.New(front.URL)
	res, err := c.Commit(ctx, client.NewTxn().RequestID("lost-answer-request-0001").Write([]byte("k"), []byte("v")))
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	if !res.Resolved || res.Version != 1 || commits.Load() != 1 {
		t.Fatalf("commit = %+v after %d sends; want resolved at version 1 after one send", res, commits.Load())
	}
	v, err := client.New(leader.URL).Version(ctx)
	if err != nil || v.Version != 1 {
		t.Fatalf("leader at %d, %v: want exactly one transaction", v.Version, err)
	}
}

// A subscription follows a takeover: its server goes away mid-stream, it
// reconnects to the next endpoint with Last-Event-ID and goes on with no
// gap and no repeat.
func TestSubscriptionFollowsTakeover(t *testing.T) {
	leader := realServer(t)
	ctx := ctxT(t)
	target, _ := url.Parse(leader.URL)
	var lastIDs []string
	var mu sync.Mutex
	newProxy := func() *httptest.Server {
		p := httputil.NewSingleHostReverseProxy(target)
		p.FlushInterval = -1
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
			mu.Unlock()
			p.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	a, b := newProxy(), newProxy()
	writer := client.New(leader.URL)
	commit := func(i int) {
		if _, err := writer.Commit(ctx, client.NewTxn().Write([]byte(fmt.Sprint("k", i)), []byte("v"))); err != nil {
			t.Fatal(err)
		}
	}
	zero := uint64(0)
	sub := client.New(a.URL+","+b.URL).Subscribe(ctx, client.SubscribeOptions{After: &zero})
	defer sub.Close()
	next := func() client.Transaction {
		for {
			ev, err := sub.Next(ctx)
			if err != nil {
				t.Fatalf("subscription: %v", err)
			}
			if ev.Kind == client.EventTransaction {
				return ev.Transaction
			}
		}
	}
	for i := 1; i <= 3; i++ {
		commit(i)
	}
	for i := 1; i <= 3; i++ {
		if tx := next(); tx.Version != uint64(i) {
			t.Fatalf("got version %d; want %d", tx.Version, i)
		}
	}
	a.CloseClientConnections() // the server it followed dies
	a.Close()
	for i := 4; i <= 6; i++ {
		commit(i)
	}
	for i := 4; i <= 6; i++ {
		if tx := next(); tx.Version != uint64(i) || tx.PrevVersion != uint64(i-1) {
			t.Fatalf("after the takeover got %d (prev %d); want %d", tx.Version, tx.PrevVersion, i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got := lastIDs[len(lastIDs)-1]; got != "3" {
		t.Fatalf("reconnected with Last-Event-ID %q; want 3 (connections: %q)", got, lastIDs)
	}
}

// takeoverFront is a replica that, until it has redirected `until` requests
// to a dead leader (the old one, whose lease has not expired yet), answers
// 307 to it; then it takes over and serves as the leader (a proxy to the
// real server).
func newTakeoverFront(t *testing.T, deadURL, leaderURL string, until int64) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	redirects, commits := new(atomic.Int64), new(atomic.Int64)
	target, _ := url.Parse(leaderURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if redirects.Load() < until {
			redirects.Add(1)
			w.Header().Set("Location", deadURL+r.URL.RequestURI())
			w.WriteHeader(http.StatusTemporaryRedirect)
			fmt.Fprintf(w, `{"error":"not_leader","message":"replica","leader_url":%q}`, deadURL)
			return
		}
		if r.URL.Path == "/v1/commit" {
			commits.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, redirects, commits
}

// During a takeover the replica still names the dead leader for a while:
// every redirect ends in a refused connection. A commit keeps trying (it
// never left, so no status round) for longer than WithMaxAttempts would
// allow, bounded by the outcome wait, and commits once when the replica
// takes over.
func TestCommitWaitsOutATakeover(t *testing.T) {
	leader := realServer(t)
	front, redirects, commits := newTakeoverFront(t, downURL(t), leader.URL, 12)
	ctx := ctxT(t)
	c := client.New(front.URL, client.WithMaxAttempts(3), client.WithBackoff(time.Millisecond, 20*time.Millisecond))
	res, err := c.Commit(ctx, client.NewTxn().Write([]byte("k"), []byte("v")))
	if err != nil {
		t.Fatalf("commit across the takeover: %v (after %d redirects)", err, redirects.Load())
	}
	if res.Resolved || res.Version != 1 || commits.Load() != 1 {
		t.Fatalf("commit = %+v after %d sends to the new leader; want version 1, sent once", res, commits.Load())
	}
}
