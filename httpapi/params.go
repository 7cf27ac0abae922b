package httpapi

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/weaseldb/weaseldb/netpoll"
)

// Query parameters are as strict as JSON fields (API.md): a parameter the
// route does not define, one given twice, or one whose name is not plain
// is a 400 naming it. Values are parsed by the handlers, which name the
// parameter when a value does not parse. Handlers read values with
// Request.Query, which returns the first occurrence: checkQuery has made
// sure there is only one.

// Parameters each route defines.
var (
	paramsNone      []string
	paramsStatus    = []string{"request_id", "min_version"}
	paramsSubscribe = []string{"after", "durable", "begin", "end"}
)

// checkQuery checks the raw query string against the parameter names a
// route defines. It returns "" when the query is acceptable, else a message
// of the form "<name>: <what is wrong>". It never allocates on success.
//
// Rules: pairs are separated by '&'; an empty pair (as in "a=1&&b=2" or a
// trailing '&') is ignored, as url.ParseQuery does; a pair without '=' has
// an empty value; names are compared byte for byte, so a percent-encoded
// or '+'-containing name never matches a defined one and is refused rather
// than silently ignored.
func checkQuery(raw []byte, allowed []string) string {
	var seen uint32 // bit i: allowed[i] was given (routes define a handful)
	for len(raw) > 0 {
		var pair []byte
		if i := bytes.IndexByte(raw, '&'); i >= 0 {
			pair, raw = raw[:i], raw[i+1:]
		} else {
			pair, raw = raw, nil
		}
		if len(pair) == 0 {
			continue
		}
		name := pair
		if i := bytes.IndexByte(pair, '='); i >= 0 {
			name = pair[:i]
		}
		if len(name) == 0 {
			return "query: a parameter without a name (" + describeName(pair) + ")"
		}
		idx := -1
		for i, a := range allowed {
			if string(name) == a {
				idx = i
				break
			}
		}
		if idx < 0 {
			return describeName(name) + ": unknown query parameter (" + definedParams(allowed) + ")"
		}
		if seen&(1<<idx) != 0 {
			return describeName(name) + ": query parameter given more than once"
		}
		seen |= 1 << idx
	}
	return ""
}

// definedParams says which parameters a route takes, for error messages.
func definedParams(allowed []string) string {
	if len(allowed) == 0 {
		return "this endpoint takes no query parameters"
	}
	return "this endpoint takes " + strings.Join(allowed, ", ")
}

// describeName renders a client-supplied parameter name for a message:
// as is when it is short and plain, else quoted and cut to 64 bytes.
func describeName(name []byte) string {
	const maxShown = 64
	plain := len(name) <= maxShown
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			plain = false
			break
		}
	}
	if plain {
		return string(name)
	}
	if len(name) > maxShown {
		return strconv.QuoteToASCII(string(name[:maxShown])) + "…"
	}
	return strconv.QuoteToASCII(string(name))
}

// guardedHandler runs the checks every route shares before its handler
// sees the request: the bearer token (when the route needs it) and the
// query parameters. They run in ServeHead, so a refused request is
// answered before its body is read.
type guardedHandler struct {
	api    *API
	route  routeID
	open   bool // no token needed (/healthz, /readyz)
	params []string
	inner  netpoll.Handler
}

func (h *guardedHandler) ServeHead(ex *netpoll.Exchange) {
	if !h.open && !h.api.authorized(ex, h.route) {
		return
	}
	if msg := checkQuery(ex.Request().RawQuery(), h.params); msg != "" {
		h.api.respondError(ex, h.route, 400, "bad_request", msg)
		return
	}
	h.inner.ServeHead(ex)
}

func (h *guardedHandler) ServeBody(ex *netpoll.Exchange, chunk []byte) {
	if !ex.Answered() {
		h.inner.ServeBody(ex, chunk)
	}
}

func (h *guardedHandler) ServeEnd(ex *netpoll.Exchange) {
	if !ex.Answered() {
		h.inner.ServeEnd(ex)
	}
}
