package httpapi

import (
	"strconv"

	"github.com/weaseldb/weaseldb/jsonstream"
	"github.com/weaseldb/weaseldb/netpoll"
)

// routeID names a route for the requests-by-route metric.
type routeID uint8

const (
	routeVersion routeID = iota
	routeCommit
	routeStatus
	routeSubscribe
	routeRetention
	routeHealth
	routeMetrics
	routeCount
)

var routeNames = [routeCount]string{"version", "commit", "status", "subscribe", "retention", "health", "metrics"}

const contentTypeJSON = "application/json"

// respond answers inline and counts the answer.
func (a *API) respond(ex *netpoll.Exchange, route routeID, status int, body []byte, headers ...netpoll.Header) {
	a.met.countResponse(route, status)
	ex.Respond(status, contentTypeJSON, body, headers...)
}

// respondError answers with API.md's error body.
func (a *API) respondError(ex *netpoll.Exchange, route routeID, status int, code, message string, headers ...netpoll.Header) {
	a.respond(ex, route, status, jsonstream.AppendError(ex.Scratch(), code, []byte(message)), headers...)
}

// appendField appends `,"name":` to a JSON object under construction.
func appendField(dst []byte, name string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

// appendUintField appends `,"name":v`.
func appendUintField(dst []byte, name string, v uint64) []byte {
	return strconv.AppendUint(appendField(dst, name), v, 10)
}
