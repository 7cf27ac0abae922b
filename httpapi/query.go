package httpapi

import (
	"strconv"

	"github.com/weaseldb/weaseldb/engine"
	"github.com/weaseldb/weaseldb/jsonstream"
	"github.com/weaseldb/weaseldb/netpoll"
	"github.com/weaseldb/weaseldb/tx"
)

// serveVersion answers GET /v1/version.
func (a *API) serveVersion(ex *netpoll.Exchange, _ []byte) {
	eng := a.engine()
	if eng == nil {
		a.respondError(ex, routeVersion, 503, "unavailable", "starting: the log is being recovered")
		return
	}
	b := jsonstream.AppendVersionAnswer(ex.Scratch(), eng.Version(), a.leaderIDFor(eng))
	b = a.appendRoleOf(b[:len(b)-1], eng) // reopen the object
	b = append(b, '}')
	ex.SetScratch(b)
	a.respond(ex, routeVersion, 200, b)
}

// serveStatus answers GET /v1/status?request_id=ID&min_version=V.
func (a *API) serveStatus(ex *netpoll.Exchange, _ []byte) {
	r := ex.Request()
	raw, ok := r.Query("request_id")
	if !ok || len(raw) == 0 {
		a.respondError(ex, routeStatus, 400, "bad_request", "request_id: missing query parameter")
		return
	}
	id, err := netpoll.AppendUnescapeQuery(nil, raw)
	if err != nil || len(id) < 20 || len(id) > 256 {
		a.respondError(ex, routeStatus, 400, "bad_request", "request_id: must be 20 to 256 bytes, percent-encoded")
		return
	}
	eng := a.leaderEngine(ex, routeStatus)
	if eng == nil {
		return
	}
	q := engine.StatusQuery{RequestID: id}
	if mv, ok := r.Query("min_version"); ok {
		v, err := parseVersion(mv)
		if err != nil {
			a.respondError(ex, routeStatus, 400, "bad_request", "min_version: "+err.Error())
			return
		}
		q.MinVersion, q.HasMinVersion = v, true
	}
	// Answered through the engine's pipeline, behind the commits already
	// queued: the reactor never waits on the resolver.
	call := &statusCall{api: a, id: id, det: ex.DetachPipelined()}
	eng.SubmitStatus(&call.req, q, call.finish)
}

// statusCall is one status query handed to the engine (rare enough that
// it is allocated per query).
type statusCall struct {
	api *API
	id  []byte
	det netpoll.Detached
	req engine.Request
}

// finish is the engine's done callback: encode the answer and hand it to
// the token.
func (c *statusCall) finish(r *engine.Request) {
	a := c.api
	ans := r.StatusAnswer
	var status int
	var body []byte
	switch ans.State {
	case engine.StatusGone:
		status = 410
		body = jsonstream.AppendError(nil, "gone", []byte("min_version: older than the status window the server can answer for (it covers versions above "+
			strconv.FormatUint(uint64(ans.Floor), 10)+")"))
	case engine.StatusUnavailable:
		status = 503
		body = jsonstream.AppendError(nil, "unavailable", []byte("the server cannot answer status queries right now (shutting down, or its status index cannot be read): ask again"))
	case engine.StatusDeposed:
		status = 503
		body = appendErrorReason(nil, "unavailable", "this server was deposed by another leader: ask the new leader's /v1/status", "leader_changed", c.id)
	default:
		state := jsonstream.RequestNotCommitted
		switch ans.State {
		case engine.StatusCommitted:
			state = jsonstream.RequestCommitted
		case engine.StatusInFlight:
			state = jsonstream.RequestInFlight
		}
		status = 200
		body = jsonstream.AppendStatusAnswer(nil, c.id, state, ans.Version)
	}
	a.met.countResponse(routeStatus, status)
	// Respond fails only if the connection was closed meanwhile.
	_ = c.det.Respond(status, contentTypeJSON, body)
}

// appendRole appends `,"role":"<role>"` to a JSON object under
// construction. Roles are plain ASCII words: no escaping needed.
func appendRole(dst []byte, role engine.Role) []byte {
	dst = append(appendField(dst, "role"), '"')
	dst = append(dst, role...)
	return append(dst, '"')
}

// parseVersion parses a decimal uint64 exactly (no sign, no leading zeros
// beyond "0", no overflow).
func parseVersion(b []byte) (tx.Version, error) {
	if len(b) == 0 {
		return 0, errVersionSyntax
	}
	if len(b) > 1 && b[0] == '0' {
		return 0, errVersionSyntax
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, errVersionSyntax
	}
	return tx.Version(v), nil
}

type versionError struct{}

func (versionError) Error() string { return "must be an unsigned 64-bit decimal integer" }

var errVersionSyntax error = versionError{}

// serveHealthz answers GET /healthz: the process is up.
func (a *API) serveHealthz(ex *netpoll.Exchange, _ []byte) {
	a.respond(ex, routeHealth, 200, []byte(`{"status":"ok"}`))
}

// serveReadyz answers GET /readyz: leader, recovered, persistence writable.
func (a *API) serveReadyz(ex *netpoll.Exchange, _ []byte) {
	eng := a.engine()
	if eng == nil || !a.ready.Load() {
		a.respondError(ex, routeHealth, 503, "unavailable", "not ready: starting or shutting down")
		return
	}
	st := eng.Stats()
	switch {
	case eng.IsReplica():
		b := jsonstream.AppendError(ex.Scratch(), "unavailable", []byte("not ready: this server is a replica; commits go to the leader"))
		b = a.appendRoleOf(b[:len(b)-1], eng)
		b = append(b, '}')
		ex.SetScratch(b)
		a.respond(ex, routeHealth, 503, b)
	case st.Deposed:
		a.respondError(ex, routeHealth, 503, "unavailable", "not ready: deposed by another leader")
	case st.PersistenceDamage != "":
		a.respondError(ex, routeHealth, 503, "unavailable", "not ready: "+st.PersistenceDamage)
	case st.PersistenceFailing:
		a.respondError(ex, routeHealth, 503, "unavailable", "not ready: persistence is failing")
	default:
		b := append(ex.Scratch(), `{"status":"ready","leader_id":`...)
		b = jsonstream.AppendString(b, []byte(eng.LeaderID()))
		b = appendUintField(b, "version", uint64(st.DurableVersion))
		b = appendRole(b, eng.Role())
		b = append(b, '}')
		ex.SetScratch(b)
		a.respond(ex, routeHealth, 200, b)
	}
}

// appendRoleOf appends ,"role":"leader"|"replica" and, on a replica that
// knows its leader, ,"leader_url":"…" to an open JSON object.
func (a *API) appendRoleOf(b []byte, eng *engine.Engine) []byte {
	b = appendRole(b, eng.Role())
	if !eng.IsReplica() {
		return b
	}
	if u := a.LeaderURL(); u != "" {
		b = appendField(b, "leader_url")
		b = jsonstream.AppendString(b, []byte(u))
	}
	return b
}
