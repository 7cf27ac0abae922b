// Package jsonstream parses the body of POST /v1/commit (API.md) as it
// arrives, in pieces of any size, into a tx.Commit whose keys, values and ids
// live in the connection's arena; and it encodes the answers the server sends
// most often (commit answers, SSE transaction events) by appending to a
// buffer. Neither side uses reflection or allocates per request in steady
// state.
//
// # Parsing: the push contract
//
// A connection owns one Parser, one arena.Arena and one tx.Commit. For each
// request:
//
//  1. p.Reset(a, &commit): start a new body. commit is emptied (its slice
//     capacity is kept) and will be filled as the body is parsed.
//  2. p.Write(chunk) for every piece of the body as it comes off the socket,
//     split anywhere (even inside a \u escape or a number). Write never keeps
//     chunk: what it needs is copied into the arena or the parser's scratch.
//     It returns an *Error as soon as the input is known to be bad or over a
//     limit; that error is sticky.
//  3. p.Finish() at the end of the body: an *Error if the document is
//     incomplete or fails a rule that needs the whole body (a precondition
//     with neither "version" nor "read_version").
//  4. Use commit; its byte slices are valid until the arena is Reset.
//
// Error.Kind says which HTTP answer fits: KindBadRequest (400) or KindTooLarge
// (413). Error.Field names the JSON path ("operations[3].key").
//
// # What is accepted
//
// The JSON grammar of RFC 8259 wherever it can appear: whitespace between
// tokens, any field order, every string escape including \uXXXX and surrogate
// pairs (a lone surrogate becomes U+FFFD, as encoding/json does). On top of
// that, the rules of API.md:
//
//   - Top-level fields: request_id (string, 20–256 bytes), leader_id (string,
//     1–256 bytes), read_version (uint64), preconditions and operations
//     (arrays of objects). All optional.
//   - Preconditions: {"type":"point_read","key":K} or
//     {"type":"range_read","begin":B,"end":E}, each with an optional
//     "version" (uint64, sets HasVersion). With neither a "version" nor a
//     top-level "read_version" the commit is refused at Finish.
//   - Operations: {"type":"write","key":K,"value":V}, {"type":"delete",
//     "key":K}, {"type":"range_delete","begin":B,"end":E}.
//   - Keys and values are base64, standard alphabet, padded, canonical
//     (padding bits zero, as base64.StdEncoding.Strict), with no line breaks.
//     Escapes inside them are decoded first, so "\u0041AAA" is "AAAA".
//   - Ranges need begin < end, bytewise. An empty key is a valid key.
//   - Versions are JSON integers in [0, 2^64-1], parsed exactly: a sign,
//     fraction, exponent, leading zero or overflow is refused.
//   - Unknown fields, fields that do not belong to the object's type (a
//     "value" on a delete) and duplicate fields are refused.
//   - null: for an optional field (request_id, leader_id, read_version,
//     preconditions, operations, a precondition's version) null means
//     absent, but still counts as the field being present for the duplicate
//     check; for a required field (type, key, value, begin, end) and for an
//     array element, null is a type error.
//   - The body must be valid UTF-8 (RFC 8259 §8.1): invalid bytes are
//     refused, not replaced.
//   - Limits (Limits, zero fields take the API.md defaults) are answered
//     with KindTooLarge as soon as they are known to be exceeded: the body
//     size as bytes arrive, a key or value when its encoded text gets too
//     long, an array when its element count passes the maximum. A request_id
//     or leader_id of the wrong length is a KindBadRequest, as API.md says.
//
// # Encoding
//
// AppendCommitAnswer, AppendTransactionEvent, AppendCheckpointEvent,
// AppendVersionAnswer, AppendStatusAnswer, AppendError, AppendString,
// AppendBase64 and AppendTimestamp append to dst and return the extended
// slice, like strconv.AppendInt. They allocate only when dst must grow.
//
// # Design notes
//
// The parser is a byte-driven state machine with one state variable and a
// three-level context (top object, array, element object): the document
// shape is fixed, so an unknown field is refused at its name and no generic
// value skipping is needed. Strings are the bulk of a body, so:
//
//   - a member name that is known, unescaped and whole in the chunk is
//     matched in place, without entering the string states;
//   - the end of any other string is found eight bytes at a time (SWAR) for
//     the first 64 bytes, then with bytes.IndexByte;
//   - a string whole in the chunk without escapes is used in place: a
//     base64 one is decoded straight from the chunk into the arena (one
//     pass, no copy).
//
// Only a string split across chunks or holding escapes goes through the
// scratch buffer, which grows to at most the encoded size of the largest
// value (about 171 KiB by default) and is then reused.
//
// Tried and rejected: a tokenizer emitting tokens to a second layer (one
// more indirection per token for no gain with a fixed schema), and
// decoding base64 incrementally byte by byte (three times slower than
// encoding/base64 on a contiguous run, which is the common case).
package jsonstream
