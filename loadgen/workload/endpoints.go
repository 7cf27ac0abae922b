package workload

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
)

// Endpoints are the servers a run talks to: a leader and its replicas, in
// the order given. Every connection dials the current one; a connection
// error moves everybody to the next; a 307 answer (a replica naming its
// leader in leader_url) makes the leader the current target until a
// connection to it fails. Safe for concurrent use.
type Endpoints struct {
	addrs  []string // immutable: host:port; never empty
	cur    atomic.Uint32
	leader atomic.Pointer[string] // host:port learned from a 307; nil: none
}

// ParseEndpoints parses a comma-separated list of host:port or http:// URLs.
func ParseEndpoints(list string) (*Endpoints, error) {
	e := &Endpoints{}
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		hp, err := hostPort(a)
		if err != nil {
			return nil, err
		}
		e.addrs = append(e.addrs, hp)
	}
	if len(e.addrs) == 0 {
		return nil, errors.New("no server address")
	}
	return e, nil
}

// hostPort accepts "host:port" or "http://host:port[/]".
func hostPort(a string) (string, error) {
	if !strings.Contains(a, "://") {
		return a, nil
	}
	u, err := url.Parse(a)
	if err != nil || u.Scheme != "http" || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		return "", fmt.Errorf("address %q: want HOST:PORT or http://HOST:PORT", a)
	}
	return u.Host, nil
}

// Addrs returns the endpoints as given (host:port).
func (e *Endpoints) Addrs() []string { return append([]string(nil), e.addrs...) }

// Addr is where the next connection goes.
func (e *Endpoints) Addr() string {
	if l := e.leader.Load(); l != nil {
		return *l
	}
	return e.addrs[int(e.cur.Load())%len(e.addrs)]
}

// Failed says a connection to addr failed: forget it as the leader, or move
// to the next endpoint unless another connection already did.
func (e *Endpoints) Failed(addr string) {
	if l := e.leader.Load(); l != nil {
		if *l == addr {
			e.leader.CompareAndSwap(l, nil)
		}
		return
	}
	i := e.cur.Load()
	if e.addrs[int(i)%len(e.addrs)] == addr {
		e.cur.CompareAndSwap(i, (i+1)%uint32(len(e.addrs)))
	}
}

// Redirected records the leader a 307 answer named (its leader_url);
// it reports whether the URL was usable.
func (e *Endpoints) Redirected(leaderURL string) bool {
	hp, err := hostPort(leaderURL)
	if err != nil || hp == "" || !strings.Contains(leaderURL, "://") {
		return false
	}
	e.leader.Store(&hp)
	return true
}

// Spread returns the endpoints subscriber i of a run follows: e itself for
// on == "leader" (or ""), where the commits go; otherwise its own
// Endpoints starting at the i-th of the replicas (every endpoint but the
// first, for "replicas") or of all endpoints ("all"), round robin, and
// moving on from there to the others in turn when a connection fails.
func (e *Endpoints) Spread(on string, i int) (*Endpoints, error) {
	var pool []string
	switch on {
	case "", "leader":
		return e, nil
	case "replicas":
		if len(e.addrs) < 2 {
			return nil, fmt.Errorf("subscribe-on replicas: want a leader and at least one replica in the address list, have %d endpoint(s)", len(e.addrs))
		}
		pool = e.addrs[1:]
	case "all":
		pool = e.addrs
	default:
		return nil, fmt.Errorf("subscribe-on %q: want leader, replicas or all", on)
	}
	s := &Endpoints{}
	for k := range pool {
		s.addrs = append(s.addrs, pool[(i+k)%len(pool)])
	}
	if on == "replicas" {
		s.addrs = append(s.addrs, e.addrs[0]) // the leader last: after every replica failed
	}
	return s, nil
}
