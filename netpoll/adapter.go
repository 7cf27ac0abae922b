package netpoll

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
)

// Buffered returns a Handler that gathers the whole body (bounded by the
// route's MaxBodyBytes) in the connection's scratch buffer and calls fn in
// ServeEnd with it; body is nil for a request without one. fn runs on the
// reactor: it answers with ex.Respond, or detaches. body stays valid until
// the answer is sent.
func Buffered(fn func(ex *Exchange, body []byte)) Handler { return bufferedHandler{fn} }

type bufferedHandler struct {
	fn func(ex *Exchange, body []byte)
}

func (h bufferedHandler) ServeHead(ex *Exchange) { ex.c.scratch = ex.c.scratch[:0] }

func (h bufferedHandler) ServeBody(ex *Exchange, chunk []byte) {
	ex.c.scratch = append(ex.c.scratch, chunk...)
}

func (h bufferedHandler) ServeEnd(ex *Exchange) {
	var body []byte
	if ex.c.req.HasBody() {
		body = ex.c.scratch
	}
	h.fn(ex, body)
}

// HTTPHandler hosts a standard http.Handler on a route: the body is
// buffered (up to the route's MaxBodyBytes), the handler runs on its own
// goroutine with the connection detached, and its response is buffered and
// sent with a Content-Length. Use it where convenience beats speed:
// promhttp's /metrics, the fake S3 server. A panic in the handler is
// answered 500. Hijacking and flushing are not supported.
func HTTPHandler(h http.Handler) Handler {
	return Buffered(func(ex *Exchange, body []byte) {
		req, err := newHTTPRequest(ex.Request(), body)
		if err != nil {
			ex.RespondError(http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		d := ex.Detach()
		go serveHTTP(h, d, req)
	})
}

func newHTTPRequest(r *Request, body []byte) (*http.Request, error) {
	target := string(r.Target())
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, fmt.Errorf("request target: %w", err)
	}
	hdr := make(http.Header, r.nfields)
	host := ""
	r.VisitHeaders(func(name, value []byte) {
		key := http.CanonicalHeaderKey(string(name))
		hdr[key] = append(hdr[key], string(value))
	})
	if v, ok := r.Header("Host"); ok {
		host = string(v)
	}
	hdr.Del("Host")
	if u.Host != "" {
		host = u.Host // absolute-form: the target's authority wins (RFC 9112 §3.2.2)
	}
	req := &http.Request{
		Method:        string(r.Method()),
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Host:          host,
		RequestURI:    target,
		Close:         r.closeRequested,
	}
	if r.http10 {
		req.Proto, req.ProtoMinor = "HTTP/1.0", 0
	}
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	return req, nil
}

func serveHTTP(h http.Handler, d Detached, req *http.Request) {
	rw := &bufferedResponseWriter{header: http.Header{}}
	defer func() {
		if p := recover(); p != nil {
			slog.Error("netpoll: http.Handler panicked", "path", req.URL.Path, "panic", p)
			if err := d.RespondError(http.StatusInternalServerError, "internal", "handler panicked"); err != nil {
				slog.Error("netpoll: cannot answer after panic", "err", err)
			}
		}
	}()
	h.ServeHTTP(rw, req)
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	length := int64(len(rw.body))
	if req.Method == http.MethodHead {
		if v, err := strconv.ParseInt(rw.header.Get("Content-Length"), 10, 64); err == nil && v >= 0 {
			length = v
		}
	}
	contentType := rw.header.Get("Content-Type")
	if _, set := rw.header["Content-Type"]; !set && len(rw.body) > 0 {
		contentType = http.DetectContentType(rw.body)
	}
	var hdrs []Header
	for name, values := range rw.header {
		switch name {
		case "Content-Length", "Content-Type", "Connection", "Transfer-Encoding", "Date":
			continue
		}
		for _, v := range values {
			hdrs = append(hdrs, Header{Name: name, Value: []byte(v)})
		}
	}
	if err := d.respondLength(rw.status, contentType, rw.body, hdrs, length); err != nil {
		slog.Warn("netpoll: http.Handler answer dropped", "err", err)
	}
}

type bufferedResponseWriter struct {
	header http.Header
	status int
	body   []byte
}

func (w *bufferedResponseWriter) Header() http.Header { return w.header }

func (w *bufferedResponseWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *bufferedResponseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body = append(w.body, p...)
	return len(p), nil
}
