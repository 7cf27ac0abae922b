package jsonstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/weaseldb/weaseldb/tx"
)

// refParse is the deliberately dumb oracle for the parser: encoding/json's
// tokenizer and encoding/base64, with the rules of API.md (as the package
// doc states them) written out plainly on top. It returns the commit or an
// error; only accept/reject and the decoded values are compared with the
// parser, not the error kinds or messages.
func refParse(body []byte, lim Limits) (*tx.Commit, error) {
	lim = lim.WithDefaults()
	if len(body) > lim.MaxBodyBytes {
		return nil, errors.New("body too large")
	}
	if !utf8.Valid(body) {
		return nil, errors.New("invalid UTF-8")
	}
	if !json.Valid(body) {
		return nil, errors.New("invalid JSON")
	}
	if refLoneSurrogate(body) {
		return nil, errors.New("lone surrogate")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if tok, _ := d.Token(); tok != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	c := &tx.Commit{}
	seen := map[string]bool{}
	for d.More() {
		tok, _ := d.Token()
		name := tok.(string)
		if seen[name] {
			return nil, fmt.Errorf("duplicate %s", name)
		}
		seen[name] = true
		val, _ := d.Token()
		switch name {
		case "request_id", "leader_id":
			if val == nil {
				continue
			}
			s, ok := val.(string)
			if !ok {
				return nil, errors.New("id not a string")
			}
			if name == "request_id" {
				if len(s) < 20 || len(s) > 256 {
					return nil, errors.New("request_id length")
				}
				c.RequestID = []byte(s)
			} else {
				if len(s) < 1 || len(s) > 256 {
					return nil, errors.New("leader_id length")
				}
				c.LeaderID = []byte(s)
			}
		case "read_version":
			if val == nil {
				continue
			}
			v, err := refUint(val)
			if err != nil {
				return nil, err
			}
			c.ReadVersion, c.HasReadVersion = tx.Version(v), true
		case "preconditions", "operations":
			if val == nil {
				continue
			}
			if val != json.Delim('[') {
				return nil, errors.New("not an array")
			}
			for n := 0; d.More(); n++ {
				max := lim.MaxOperations
				if name == "preconditions" {
					max = lim.MaxPreconditions
				}
				if n >= max {
					return nil, errors.New("too many elements")
				}
				m, err := refObject(d, name == "preconditions")
				if err != nil {
					return nil, err
				}
				if name == "preconditions" {
					pc, err := refPrecondition(m, lim)
					if err != nil {
						return nil, err
					}
					c.Preconditions = append(c.Preconditions, pc)
				} else {
					op, err := refOperation(m, lim)
					if err != nil {
						return nil, err
					}
					c.Operations = append(c.Operations, op)
				}
			}
			d.Token() // ']'
		default:
			return nil, fmt.Errorf("unknown field %q", name)
		}
	}
	if !c.HasReadVersion {
		for _, pc := range c.Preconditions {
			if !pc.HasVersion {
				return nil, errors.New("precondition without version")
			}
		}
	}
	return c, nil
}

func refUint(val any) (uint64, error) {
	n, ok := val.(json.Number)
	if !ok {
		return 0, errors.New("not a number")
	}
	return strconv.ParseUint(string(n), 10, 64)
}

// refObject reads one element object into a map of its members (values as
// tokens), refusing non-objects, nested values, unknown and duplicate names.
func refObject(d *json.Decoder, pre bool) (map[string]any, error) {
	tok, _ := d.Token()
	if tok != json.Delim('{') {
		return nil, errors.New("element not an object")
	}
	m := map[string]any{}
	for d.More() {
		tok, _ := d.Token()
		name := tok.(string)
		known := name == "type" || name == "key" || name == "begin" || name == "end" ||
			(pre && name == "version") || (!pre && name == "value")
		if !known {
			return nil, fmt.Errorf("unknown element field %q", name)
		}
		if _, dup := m[name]; dup {
			return nil, errors.New("duplicate element field")
		}
		val, _ := d.Token()
		if delim, ok := val.(json.Delim); ok {
			return nil, fmt.Errorf("nested value %v", delim)
		}
		m[name] = val
	}
	d.Token() // '}'
	return m, nil
}

func refFields(m map[string]any, allowed ...string) error {
	for name := range m {
		ok := false
		for _, a := range allowed {
			ok = ok || a == name
		}
		if !ok {
			return fmt.Errorf("%s not allowed", name)
		}
	}
	return nil
}

func refBase64(m map[string]any, name string, max int) ([]byte, error) {
	v, present := m[name]
	if !present {
		return nil, fmt.Errorf("missing %s", name)
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("%s not a string", name)
	}
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("line break in base64")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, errors.New("too large")
	}
	return b, nil
}

func refPrecondition(m map[string]any, lim Limits) (tx.Precondition, error) {
	var pc tx.Precondition
	var err error
	if v, ok := m["version"]; ok && v != nil {
		u, err := refUint(v)
		if err != nil {
			return pc, err
		}
		pc.Version, pc.HasVersion = tx.Version(u), true
	}
	switch m["type"] {
	case "point_read":
		pc.Type = tx.PointRead
		if err := refFields(m, "type", "key", "version"); err != nil {
			return pc, err
		}
		pc.Key, err = refBase64(m, "key", lim.MaxKeyBytes)
		return pc, err
	case "range_read":
		pc.Type = tx.RangeRead
		if err := refFields(m, "type", "begin", "end", "version"); err != nil {
			return pc, err
		}
		if pc.Key, err = refBase64(m, "begin", lim.MaxKeyBytes); err != nil {
			return pc, err
		}
		if pc.End, err = refBase64(m, "end", lim.MaxKeyBytes); err != nil {
			return pc, err
		}
		if bytes.Compare(pc.Key, pc.End) >= 0 {
			return pc, errors.New("begin >= end")
		}
		return pc, nil
	}
	return pc, errors.New("bad precondition type")
}

func refOperation(m map[string]any, lim Limits) (tx.Operation, error) {
	var op tx.Operation
	var err error
	switch m["type"] {
	case "write":
		op.Type = tx.OpWrite
		if err := refFields(m, "type", "key", "value"); err != nil {
			return op, err
		}
		if op.Key, err = refBase64(m, "key", lim.MaxKeyBytes); err != nil {
			return op, err
		}
		op.Value, err = refBase64(m, "value", lim.MaxValueBytes)
		return op, err
	case "delete":
		op.Type = tx.OpDelete
		if err := refFields(m, "type", "key"); err != nil {
			return op, err
		}
		op.Key, err = refBase64(m, "key", lim.MaxKeyBytes)
		return op, err
	case "range_delete":
		op.Type = tx.OpRangeDelete
		if err := refFields(m, "type", "begin", "end"); err != nil {
			return op, err
		}
		if op.Key, err = refBase64(m, "begin", lim.MaxKeyBytes); err != nil {
			return op, err
		}
		if op.End, err = refBase64(m, "end", lim.MaxKeyBytes); err != nil {
			return op, err
		}
		if bytes.Compare(op.Key, op.End) >= 0 {
			return op, errors.New("begin >= end")
		}
		return op, nil
	}
	return op, errors.New("bad operation type")
}

// render prints a commit canonically (nil and empty slices alike), so two
// parses can be compared as strings and a mismatch reads well.
func render(c *tx.Commit) string {
	var b strings.Builder
	fmt.Fprintf(&b, "request_id=%q leader_id=%q", c.RequestID, c.LeaderID)
	if c.HasReadVersion {
		fmt.Fprintf(&b, " read_version=%d", c.ReadVersion)
	}
	for i, pc := range c.Preconditions {
		fmt.Fprintf(&b, "\n pre[%d] %s key=%q end=%q", i, pc.Type, pc.Key, pc.End)
		if pc.HasVersion {
			fmt.Fprintf(&b, " version=%d", pc.Version)
		}
	}
	for i, op := range c.Operations {
		fmt.Fprintf(&b, "\n op[%d] %s key=%q end=%q value=%q", i, op.Type, op.Key, op.End, op.Value)
	}
	return b.String()
}

// refLoneSurrogate reports a \uD800–\uDFFF escape that is not the high half
// directly followed by the low half of a pair. body is valid JSON, so every
// backslash starts an escape inside a string.
func refLoneSurrogate(body []byte) bool {
	hex := func(i int) rune {
		if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
			return -1
		}
		v, err := strconv.ParseUint(string(body[i+2:i+6]), 16, 32)
		if err != nil {
			return -1
		}
		return rune(v)
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		r := hex(i)
		switch {
		case r < 0:
			i++ // a one-letter escape such as \\ or \"
		case r >= 0xD800 && r <= 0xDBFF:
			if lo := hex(i + 6); lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		default:
			i += 5
		}
	}
	return false
}
