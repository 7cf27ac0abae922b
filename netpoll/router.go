package netpoll

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// Route binds a method and a path pattern to a Handler.
//
// Path is one of
//   - a static path: "/v1/version", "/v1/retention/" (exact match, raw bytes);
//   - a static prefix ending in one parameter segment: "/v1/retention/{id}"
//     matches "/v1/retention/abc" (a non-empty last segment without '/'),
//     read with Request.Param("id");
//   - "*": the catch-all, taking every path no other route matches (the
//     fake S3 server uses it alone).
//
// Method is "GET", "POST", ...; "" accepts every method (catch-all use). A
// HEAD request on a path with a GET route and no HEAD route runs the GET
// handler and the server drops the response body.
type Route struct {
	Method  string
	Path    string
	Handler Handler
	// MaxBodyBytes bounds the request body; a larger Content-Length is
	// answered 413 before any body byte is read (and without 100 Continue),
	// and a chunked body is cut off with 413 when it grows past it.
	// 0 selects DefaultMaxBodyBytes; there is no "unlimited".
	MaxBodyBytes int64
}

// DefaultMaxBodyBytes is the body limit of a Route that sets none.
const DefaultMaxBodyBytes = 1 << 20

// Router is a static route table compiled to a perfect hash: every static
// path (and every parameter prefix) lands in its own slot of a power-of-two
// table under a seed found at build time, so a lookup is one hash of the
// path, one slot and one byte comparison — the Go cousin of the seed's
// gperf-generated router. A miss on the full path tries the prefix up to the
// last '/' in the parameter table. Lookups never allocate.
type Router struct {
	static   perfectTable
	params   perfectTable
	catchAll *pathEntry
}

type pathEntry struct {
	key       string // static path, or the prefix before "{name}"
	paramName string
	routes    []routeEntry
	allow     []byte // "GET, HEAD, PUT" for 405 answers
}

type routeEntry struct {
	method  string
	handler Handler
	maxBody int64
	// tooLarge is the 413 message, stating the limit (built once).
	tooLarge string
}

// perfectTable maps keys to entries with no collisions: slot = hash(seed,
// key) & mask.
type perfectTable struct {
	seed  uint64
	mask  uint64
	slots []*pathEntry
}

// NewRouter compiles routes. It reports every bad or duplicate route.
func NewRouter(routes []Route) (*Router, error) {
	byKey := map[string]*pathEntry{}
	var problems []string
	rt := &Router{}
	var static, params []*pathEntry
	for i, r := range routes {
		if r.Handler == nil {
			problems = append(problems, fmt.Sprintf("route %d (%s %s): nil Handler", i, r.Method, r.Path))
			continue
		}
		if r.MaxBodyBytes < 0 {
			problems = append(problems, fmt.Sprintf("route %d (%s %s): negative MaxBodyBytes %d", i, r.Method, r.Path, r.MaxBodyBytes))
			continue
		}
		if r.Method != "" && !isToken([]byte(r.Method)) {
			problems = append(problems, fmt.Sprintf("route %d: method %q is not a token", i, r.Method))
			continue
		}
		maxBody := r.MaxBodyBytes
		if maxBody == 0 {
			maxBody = DefaultMaxBodyBytes
		}
		key, paramName, err := splitPattern(r.Path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("route %d: %v", i, err))
			continue
		}
		mapKey := key
		if paramName != "" {
			mapKey = key + "{}"
		}
		e := byKey[mapKey]
		if e == nil {
			e = &pathEntry{key: key, paramName: paramName}
			byKey[mapKey] = e
			switch {
			case r.Path == "*":
				rt.catchAll = e
			case paramName != "":
				params = append(params, e)
			default:
				static = append(static, e)
			}
		} else if e.paramName != paramName {
			problems = append(problems, fmt.Sprintf("route %d: %q conflicts with parameter name {%s}", i, r.Path, e.paramName))
			continue
		}
		for _, have := range e.routes {
			if have.method == r.Method {
				problems = append(problems, fmt.Sprintf("route %d: duplicate %s %s", i, r.Method, r.Path))
			}
		}
		e.routes = append(e.routes, routeEntry{method: r.Method, handler: r.Handler, maxBody: maxBody,
			tooLarge: fmt.Sprintf("request body exceeds the limit of %d bytes for %s %s", maxBody, r.Method, r.Path)})
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("netpoll router: %s", strings.Join(problems, "; "))
	}
	for _, e := range byKey {
		e.allow = []byte(allowHeader(e.routes))
	}
	var err error
	if rt.static, err = buildPerfect(static); err != nil {
		return nil, err
	}
	if rt.params, err = buildPerfect(params); err != nil {
		return nil, err
	}
	return rt, nil
}

func splitPattern(p string) (key, param string, err error) {
	if p == "*" {
		return "*", "", nil
	}
	if !strings.HasPrefix(p, "/") {
		return "", "", fmt.Errorf("path %q must start with '/' (or be \"*\")", p)
	}
	open := strings.IndexByte(p, '{')
	if open < 0 {
		if strings.ContainsAny(p, "}? \t") {
			return "", "", fmt.Errorf("path %q has a stray '}', '?' or space", p)
		}
		return p, "", nil
	}
	if p[open-1] != '/' || !strings.HasSuffix(p, "}") || strings.Count(p, "{") != 1 || strings.Count(p, "}") != 1 {
		return "", "", fmt.Errorf("path %q: a parameter must be the whole last segment, like /a/{id}", p)
	}
	name := p[open+1 : len(p)-1]
	if name == "" || strings.ContainsAny(name, "/{}") {
		return "", "", fmt.Errorf("path %q: bad parameter name %q", p, name)
	}
	return p[:open], name, nil
}

func allowHeader(routes []routeEntry) string {
	var methods []string
	seen := map[string]bool{}
	for _, r := range routes {
		m := r.method
		if m == "" {
			return ""
		}
		if !seen[m] {
			seen[m] = true
			methods = append(methods, m)
		}
		if m == "GET" && !seen["HEAD"] {
			seen["HEAD"] = true
			methods = append(methods, "HEAD")
		}
	}
	sort.Strings(methods)
	return strings.Join(methods, ", ")
}

func buildPerfect(entries []*pathEntry) (perfectTable, error) {
	if len(entries) == 0 {
		return perfectTable{}, nil
	}
	size := 1
	for size < 2*len(entries) {
		size <<= 1
	}
	for ; size <= 1<<20; size <<= 1 {
		mask := uint64(size - 1)
		slots := make([]*pathEntry, size)
	seeds:
		for seed := uint64(1); seed <= 4096; seed++ {
			clear(slots)
			for _, e := range entries {
				s := pathHash(seed, []byte(e.key)) & mask
				if slots[s] != nil {
					continue seeds
				}
				slots[s] = e
			}
			return perfectTable{seed: seed, mask: mask, slots: slots}, nil
		}
	}
	return perfectTable{}, fmt.Errorf("netpoll router: no perfect hash found for %d paths", len(entries))
}

// pathHash is FNV-1a with the seed folded into the offset basis.
func pathHash(seed uint64, b []byte) uint64 {
	h := uint64(14695981039346656037) ^ (seed * 0x9E3779B97F4A7C15)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h ^ h>>29
}

func (t *perfectTable) lookup(key []byte) *pathEntry {
	if t.slots == nil {
		return nil
	}
	e := t.slots[pathHash(t.seed, key)&t.mask]
	if e == nil || e.key != string(key) {
		return nil
	}
	return e
}

// match finds the entry for path; paramAt is where the parameter value
// starts (or -1).
func (rt *Router) match(path []byte) (e *pathEntry, paramAt int) {
	if e := rt.static.lookup(path); e != nil {
		return e, -1
	}
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			if i == len(path)-1 {
				break // empty last segment: not a parameter
			}
			if e := rt.params.lookup(path[:i+1]); e != nil {
				return e, i + 1
			}
			break
		}
	}
	if rt.catchAll != nil {
		return rt.catchAll, -1
	}
	return nil, -1
}

// lookupResult is what the connection needs from routing.
type lookupResult struct {
	route  *routeEntry
	status int    // 0 when route != nil, else 404, 405 or 501
	allow  []byte // for 405
}

// lookup resolves method and path; it sets the request's parameter span.
func (rt *Router) lookup(r *Request) lookupResult {
	path := r.Path()
	e, paramAt := rt.match(path)
	if e == nil {
		if !knownMethod(r.Method()) {
			return lookupResult{status: http.StatusNotImplemented}
		}
		return lookupResult{status: http.StatusNotFound}
	}
	method := r.Method()
	var getRoute *routeEntry
	for i := range e.routes {
		re := &e.routes[i]
		if re.method == "" || re.method == string(method) {
			r.setParam(e.paramName, paramAt)
			return lookupResult{route: re}
		}
		if re.method == "GET" {
			getRoute = re
		}
	}
	if getRoute != nil && string(method) == "HEAD" {
		r.setParam(e.paramName, paramAt)
		return lookupResult{route: getRoute}
	}
	return lookupResult{status: http.StatusMethodNotAllowed, allow: e.allow}
}

func (r *Request) setParam(name string, at int) {
	if at < 0 {
		r.paramName, r.param = "", span{}
		return
	}
	r.paramName = name
	r.param = span{r.path.off + uint32(at), r.path.n - uint32(at)}
}

// Handler looks up method and path the way the server does, for tests and
// introspection: the handler and the body limit, or the status (404, 405,
// 501) the server would answer.
func (rt *Router) Handler(method, path string) (h Handler, maxBody int64, status int) {
	var r Request
	head := method + " " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"
	if err := parseHead([]byte(head), &r); err != nil {
		return nil, 0, err.status
	}
	res := rt.lookup(&r)
	if res.route == nil {
		return nil, 0, res.status
	}
	return res.route.handler, res.route.maxBody, 0
}

func knownMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT":
		return true
	}
	return false
}
