package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/weaseldb/weaseldb/engine"
	"github.com/weaseldb/weaseldb/jsonstream"
	"github.com/weaseldb/weaseldb/netpoll"
	"github.com/weaseldb/weaseldb/tx"
)

// retentionWriteTimeout bounds a durable policy write; beyond it the client
// gets 503 and may retry (the write is idempotent).
const retentionWriteTimeout = 30 * time.Second

// policyID returns the {id} path parameter if it is a valid policy id:
// 1–128 bytes of [A-Za-z0-9._-], not "." or "..". Otherwise it answers 400.
func (a *API) policyID(ex *netpoll.Exchange) (string, bool) {
	raw, _ := ex.Request().Param("id")
	ok := len(raw) >= 1 && len(raw) <= 128 && !bytes.Equal(raw, []byte(".")) && !bytes.Equal(raw, []byte(".."))
	for _, c := range raw {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			ok = false
			break
		}
	}
	if !ok {
		a.respondError(ex, routeRetention, 400, "bad_request", "policy_id: must be 1 to 128 bytes of [A-Za-z0-9._-], not \".\" or \"..\"")
		return "", false
	}
	return string(raw), true
}

func appendPolicy(b []byte, id string, v tx.Version) []byte {
	b = append(b, `{"policy_id":`...)
	b = jsonstream.AppendString(b, []byte(id))
	b = appendUintField(b, "version", uint64(v))
	return append(b, '}')
}

// serveRetentionList answers GET /v1/retention/ (and GET /v1/retention).
func (a *API) serveRetentionList(ex *netpoll.Exchange, _ []byte) {
	eng := a.engine()
	if eng == nil {
		a.respondError(ex, routeRetention, 503, "unavailable", "starting: the log is being recovered")
		return
	}
	b := append(ex.Scratch(), `{"policies":[`...)
	for i, p := range eng.Policies() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendPolicy(b, p.ID, p.Version)
	}
	b = append(b, ']')
	b = appendUintField(b, "oldest_retained_version", uint64(eng.OldestRetained()))
	b = append(b, '}')
	ex.SetScratch(b)
	a.respond(ex, routeRetention, 200, b)
}

// serveRetentionGet answers GET /v1/retention/{id}.
func (a *API) serveRetentionGet(ex *netpoll.Exchange, _ []byte) {
	id, ok := a.policyID(ex)
	if !ok {
		return
	}
	eng := a.engine()
	if eng == nil {
		a.respondError(ex, routeRetention, 503, "unavailable", "starting: the log is being recovered")
		return
	}
	v, err := eng.GetPolicy(id)
	if err != nil {
		a.respondError(ex, routeRetention, 404, "not_found", "policy_id: no retention policy "+strconv.Quote(id))
		return
	}
	a.respond(ex, routeRetention, 200, appendPolicy(ex.Scratch(), id, v))
}

// serveRetentionPut answers PUT /v1/retention/{id} with body {"version": V}.
// The durable write happens off the reactor.
func (a *API) serveRetentionPut(ex *netpoll.Exchange, body []byte) {
	if !jsonContentTypeOK(ex.Request()) {
		a.respondError(ex, routeRetention, 415, "unsupported_media_type", "Content-Type: must be application/json (curl: use --json, not -d)")
		return
	}
	id, ok := a.policyID(ex)
	if !ok {
		return
	}
	v, msg := parsePolicyBody(body)
	if msg != "" {
		a.respondError(ex, routeRetention, 400, "bad_request", msg)
		return
	}
	eng := a.leaderEngine(ex, routeRetention)
	if eng == nil {
		return
	}
	d := ex.Detach()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), retentionWriteTimeout)
		defer cancel()
		err := eng.SetPolicy(ctx, id, v)
		switch {
		case err == nil:
			a.met.countResponse(routeRetention, 200)
			d.Respond(200, contentTypeJSON, appendPolicy(nil, id, v))
		case errors.Is(err, engine.ErrFutureVersion):
			a.met.countResponse(routeRetention, 400)
			d.Respond(400, contentTypeJSON, appendErrorReason(nil, "bad_request", "version: "+strconv.FormatUint(uint64(v), 10)+
				" is greater than any version this server has assigned ("+strconv.FormatUint(uint64(eng.ResolvedVersion()), 10)+")",
				"future_version", nil))
		case errors.Is(err, engine.ErrBelowOldest):
			a.met.countResponse(routeRetention, 409)
			d.RespondError(409, "conflict", "version: "+strconv.FormatUint(uint64(v), 10)+
				" is below oldest_retained_version "+strconv.FormatUint(uint64(eng.OldestRetained()), 10))
		default:
			a.logger.Warn("retention policy write failed", "policy_id", id, "err", err)
			a.met.countResponse(routeRetention, 503)
			d.RespondError(503, "unavailable", "could not store the policy durably: "+err.Error())
		}
	}()
}

// policyBodyShape is what a PUT body must look like, for messages.
const policyBodyShape = `want {"version": V}`

// parsePolicyBody parses {"version": V} strictly: one field, given once,
// an unsigned integer, nothing else. On error it returns a message naming
// the field (or "body" for the shape), as commit errors do, and never a Go
// decoder's own words.
func parsePolicyBody(body []byte) (tx.Version, string) {
	dec := json.NewDecoder(bytes.NewReader(body))
	syntax := func(err error) string {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return "body: invalid JSON at byte " + strconv.FormatInt(se.Offset, 10) + " (" + policyBodyShape + ")"
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return "body: ends before the JSON object does (" + policyBodyShape + ")"
		default:
			return "body: invalid JSON (" + policyBodyShape + ")"
		}
	}
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return 0, "body: empty (" + policyBodyShape + ")"
	}
	if err != nil {
		return 0, syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return 0, "body: must be a JSON object (" + policyBodyShape + ")"
	}
	var v tx.Version
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, syntax(err)
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return 0, syntax(err)
		}
		switch {
		case name != "version":
			return 0, describeName([]byte(name)) + ": unknown field (" + policyBodyShape + ")"
		case seen:
			return 0, "version: given more than once"
		}
		seen = true
		if v, err = parseVersion(raw); err != nil {
			return 0, "version: " + err.Error()
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return 0, syntax(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return 0, "body: unexpected data after the JSON object"
	}
	if !seen {
		return 0, "version: missing (" + policyBodyShape + ")"
	}
	return v, ""
}

// serveRetentionDelete answers DELETE /v1/retention/{id}.
func (a *API) serveRetentionDelete(ex *netpoll.Exchange, _ []byte) {
	id, ok := a.policyID(ex)
	if !ok {
		return
	}
	eng := a.leaderEngine(ex, routeRetention)
	if eng == nil {
		return
	}
	d := ex.Detach()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), retentionWriteTimeout)
		defer cancel()
		err := eng.DeletePolicy(ctx, id)
		switch {
		case err == nil:
			a.met.countResponse(routeRetention, 204)
			d.Respond(204, "", nil)
		case errors.Is(err, engine.ErrNoPolicy):
			a.met.countResponse(routeRetention, 404)
			d.RespondError(404, "not_found", "policy_id: no retention policy "+strconv.Quote(id))
		default:
			a.logger.Warn("retention policy delete failed", "policy_id", id, "err", err)
			a.met.countResponse(routeRetention, 503)
			d.RespondError(503, "unavailable", "could not delete the policy durably: "+err.Error())
		}
	}()
}
