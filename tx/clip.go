package tx

import "bytes"

// ClipOperations appends to dst the operations of ops that touch the key
// range [begin, end) (end nil: unbounded), with range deletes clipped to the
// range, and returns the extended slice. It is the key filter of
// /v1/subscribe and of weaseldb log dump, which must agree.
func ClipOperations(dst, ops []Operation, begin, end []byte) []Operation {
	for _, op := range ops {
		switch op.Type {
		case OpRangeDelete:
			lo, hi := op.Key, op.End
			if bytes.Compare(lo, begin) < 0 {
				lo = begin
			}
			if end != nil && bytes.Compare(hi, end) > 0 {
				hi = end
			}
			if bytes.Compare(lo, hi) < 0 {
				op.Key, op.End = lo, hi
				dst = append(dst, op)
			}
		default:
			if bytes.Compare(op.Key, begin) >= 0 && (end == nil || bytes.Compare(op.Key, end) < 0) {
				dst = append(dst, op)
			}
		}
	}
	return dst
}
