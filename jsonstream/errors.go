package jsonstream

// ErrorKind tells the HTTP layer which answer an *Error deserves.
type ErrorKind uint8

const (
	// KindBadRequest is malformed JSON, a wrong type, bad base64, an unknown
	// or duplicate field, a broken API.md rule: 400 bad_request.
	KindBadRequest ErrorKind = iota + 1
	// KindTooLarge is a body, key, value or array over its limit: 413
	// payload_too_large.
	KindTooLarge
)

// String returns the API.md error code for the kind.
func (k ErrorKind) String() string {
	switch k {
	case KindBadRequest:
		return "bad_request"
	case KindTooLarge:
		return "payload_too_large"
	}
	return "unknown"
}

// Error is a refused commit body. Field is the JSON path of the offending
// value ("operations[3].key"), empty for the document as a whole.
type Error struct {
	Kind  ErrorKind
	Field string
	Msg   string
}

// Error returns "field: message", or the message alone when Field is empty.
func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}
