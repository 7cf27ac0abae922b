package jsonstream

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/weaseldb/weaseldb/arena"
	"github.com/weaseldb/weaseldb/tx"
)

const rid = `"req-0123456789abcdef"` // 20 bytes: the shortest valid request_id

// validDocs parse without error; want is render() of the expected commit.
var validDocs = []struct{ doc, want string }{
	{`{}`, `request_id="" leader_id=""`},
	{" \t\r\n{ \n} \n", `request_id="" leader_id=""`},
	{`{"request_id":` + rid + `}`, `request_id="req-0123456789abcdef" leader_id=""`},
	{`{"request_id":null,"leader_id":null,"read_version":null,"preconditions":null,"operations":null}`, `request_id="" leader_id=""`},
	{`{"preconditions":[],"operations":[]}`, `request_id="" leader_id=""`},
	{`{"read_version":0}`, `request_id="" leader_id="" read_version=0`},
	{`{"read_version":18446744073709551615}`, `request_id="" leader_id="" read_version=18446744073709551615`},
	{`{"leader_id":"6f1c","read_version":42,"preconditions":[{"type":"point_read","key":"a2V5MQ=="},{"type":"range_read","begin":"YQ==","end":"Yg==","version":40}],"operations":[{"type":"write","key":"a2V5MQ==","value":"dmFsdWU="},{"type":"delete","key":"a2V5Mg=="},{"type":"range_delete","begin":"eA==","end":"eQ=="}]}`,
		`request_id="" leader_id="6f1c" read_version=42` +
			"\n pre[0] point_read key=\"key1\" end=\"\"" +
			"\n pre[1] range_read key=\"a\" end=\"b\" version=40" +
			"\n op[0] write key=\"key1\" end=\"\" value=\"value\"" +
			"\n op[1] delete key=\"key2\" end=\"\" value=\"\"" +
			"\n op[2] range_delete key=\"x\" end=\"y\" value=\"\""},
	// Field order is free, including "type" last.
	{`{"operations":[{"value":"AA==","key":"","type":"write"}],"request_id":` + rid + `}`,
		`request_id="req-0123456789abcdef" leader_id=""` + "\n op[0] write key=\"\" end=\"\" value=\"\\x00\""},
	// read_version after the preconditions that need it.
	{`{"preconditions":[{"key":"AAEC","type":"point_read"}],"read_version":7}`,
		`request_id="" leader_id="" read_version=7` + "\n pre[0] point_read key=\"\\x00\\x01\\x02\" end=\"\""},
	{`{"preconditions":[{"type":"point_read","key":"AA==","version":null,"version2":1}]}`, ""}, // placeholder, replaced below
	// Escapes everywhere: in names, in type values, in base64, in ids.
	{`{"\u0072equest_id":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00-123456789","operations":[{"t\u0079pe":"del\u0065te","key":"\u0041\u0041\u003d\u003d"}]}`,
		`request_id="\"\\/\b\f\n\r\té😀-123456789" leader_id=""` + "\n op[0] delete key=\"\\x00\" end=\"\" value=\"\""},
	// Surrogate pairs decode to one character.
	{`{"request_id":"\ud800\udc00\udbff\udfff\ud83d\ude00-0123456789"}`,
		"request_id=\"𐀀\\U0010ffff😀-0123456789\" leader_id=\"\""},
	// Raw non-ASCII UTF-8 in ids.
	{`{"request_id":"ключ-идемпотентности"}`, `request_id="ключ-идемпотентности" leader_id=""`},
	{`{"operations":[{"type":"range_delete","begin":"","end":"AA=="}]}`,
		`request_id="" leader_id=""` + "\n op[0] range_delete key=\"\" end=\"\\x00\" value=\"\""},
}

// invalidDocs are refused with the given kind and field path.
var invalidDocs = []struct {
	doc   string
	kind  ErrorKind
	field string
}{
	{``, KindBadRequest, ""},
	{` `, KindBadRequest, ""},
	{`[]`, KindBadRequest, ""},
	{`{`, KindBadRequest, ""},
	{`{}x`, KindBadRequest, ""},
	{`{} {}`, KindBadRequest, ""},
	{`{,}`, KindBadRequest, ""},
	{`{"read_version":1,}`, KindBadRequest, ""},
	{`{"read_version" 1}`, KindBadRequest, "read_version"},
	{`{"bogus":1}`, KindBadRequest, ""},
	{`{"Request_ID":` + rid + `}`, KindBadRequest, ""},
	{`{"request_id":` + rid + `,"request_id":` + rid + `}`, KindBadRequest, "request_id"},
	{`{"read_version":null,"read_version":1}`, KindBadRequest, "read_version"},
	{`{"request_id":"too-short"}`, KindBadRequest, "request_id"},
	{`{"request_id":"` + strings.Repeat("x", 257) + `"}`, KindBadRequest, "request_id"},
	{`{"request_id":"` + strings.Repeat("\\u0078", 257) + `"}`, KindBadRequest, "request_id"},
	{`{"request_id":"tab	inside-0123456789"}`, KindBadRequest, "request_id"},
	// Lone surrogates are refused, not decoded to U+FFFD: "\ud800-x" and
	// "\udbff-x" would alias one request_id (issue 12, item 10).
	{`{"request_id":"\ud800-0123456789abcdefgh"}`, KindBadRequest, "request_id"},
	{`{"request_id":"\udbff-0123456789abcdefgh"}`, KindBadRequest, "request_id"},
	{`{"request_id":"0123456789abcdefgh-\udc00"}`, KindBadRequest, "request_id"},
	{`{"request_id":"0123456789abcdefgh-\ud800"}`, KindBadRequest, "request_id"},
	{`{"request_id":"0123456789abcdefgh-\ud800x"}`, KindBadRequest, "request_id"},
	{`{"request_id":"0123456789abcdefgh-\ud800\n"}`, KindBadRequest, "request_id"},
	{`{"request_id":"0123456789abcdefgh-\ud800\ud800\udc00"}`, KindBadRequest, "request_id"},
	{`{"request_id":"0123456789abcdefgh-\ud800\u0041"}`, KindBadRequest, "request_id"},
	{`{"leader_id":"\ud800"}`, KindBadRequest, "leader_id"},
	{`{"leader_id":"a\udfff"}`, KindBadRequest, "leader_id"},
	{`{"operations":[{"type":"write","key":"\ud800","value":""}]}`, KindBadRequest, "operations[0].key"},
	{`{"operations":[{"type":"wr\ud800ite","key":"","value":""}]}`, KindBadRequest, "operations[0].type"},
	{"{\"request_id\":\"bad-utf8-\xff-0123456789\"}", KindBadRequest, "request_id"},
	{`{"request_id":12345678901234567890}`, KindBadRequest, "request_id"},
	{`{"leader_id":""}`, KindBadRequest, "leader_id"},
	{`{"leader_id":true}`, KindBadRequest, "leader_id"},
	{`{"read_version":-1}`, KindBadRequest, "read_version"},
	{`{"read_version":-0}`, KindBadRequest, "read_version"},
	{`{"read_version":1.0}`, KindBadRequest, "read_version"},
	{`{"read_version":1e3}`, KindBadRequest, "read_version"},
	{`{"read_version":01}`, KindBadRequest, "read_version"},
	{`{"read_version":18446744073709551616}`, KindBadRequest, "read_version"},
	{`{"read_version":"42"}`, KindBadRequest, "read_version"},
	{`{"read_version":nul}`, KindBadRequest, "read_version"},
	{`{"read_version":nulll}`, KindBadRequest, ""},
	{`{"preconditions":{}}`, KindBadRequest, "preconditions"},
	{`{"preconditions":[null]}`, KindBadRequest, "preconditions[0]"},
	{`{"preconditions":[{"type":"point_read","key":"AA=="},]}`, KindBadRequest, "preconditions[1]"},
	{`{"preconditions":[{"type":"point_read","key":"AA=="}]}`, KindBadRequest, "preconditions[0].version"},
	{`{"read_version":1,"preconditions":[{"type":"point_read","key":"AA==","version":1},{"type":"point_read","key":"AA=="}],"read_version":2}`, KindBadRequest, "read_version"},
	{`{"read_version":1,"preconditions":[{"type":"point_read"}]}`, KindBadRequest, "preconditions[0].key"},
	{`{"read_version":1,"preconditions":[{"key":"AA=="}]}`, KindBadRequest, "preconditions[0].type"},
	{`{"read_version":1,"preconditions":[{"type":"point_read","key":"AA==","end":"AQ=="}]}`, KindBadRequest, "preconditions[0].end"},
	{`{"read_version":1,"preconditions":[{"type":"range_read","begin":"AQ==","end":"AQ=="}]}`, KindBadRequest, "preconditions[0].end"},
	{`{"read_version":1,"preconditions":[{"type":"range_read","begin":"Ag==","end":"AQ=="}]}`, KindBadRequest, "preconditions[0].end"},
	{`{"read_version":1,"preconditions":[{"type":"point_read","key":"AA==","value":"AA=="}]}`, KindBadRequest, "preconditions[0]"},
	{`{"read_version":1,"preconditions":[{"type":"write","key":"AA=="}]}`, KindBadRequest, "preconditions[0].type"},
	{`{"read_version":1,"preconditions":[{"type":"point_read","key":"AA==","version":-3}]}`, KindBadRequest, "preconditions[0].version"},
	{`{"operations":[{"type":"delete","key":"AA==","version":1}]}`, KindBadRequest, "operations[0]"},
	{`{"operations":[{"type":"write","key":"AA=="}]}`, KindBadRequest, "operations[0].value"},
	{`{"operations":[{"type":"write","key":"AA==","value":null}]}`, KindBadRequest, "operations[0].value"},
	{`{"operations":[{"type":"delete","key":"AA==","value":"AA=="}]}`, KindBadRequest, "operations[0].value"},
	{`{"operations":[{"type":"delete","key":"AA==","key":"AA=="}]}`, KindBadRequest, "operations[0].key"},
	{`{"operations":[{"type":"delete","key":"AA=","type":"delete"}]}`, KindBadRequest, "operations[0].key"},
	{`{"operations":[{"type":"delete","key":"A==="}]}`, KindBadRequest, "operations[0].key"},
	{`{"operations":[{"type":"delete","key":"AB=="}]}`, KindBadRequest, "operations[0].key"}, // non-zero padding bits
	{`{"operations":[{"type":"delete","key":"AA==AA=="}]}`, KindBadRequest, "operations[0].key"},
	{`{"operations":[{"type":"delete","key":"AA\nAA=="}]}`, KindBadRequest, "operations[0].key"},
	{`{"operations":[{"type":"delete","key":"AAAA\r\nAA=="}]}`, KindBadRequest, "operations[0].key"},
	{`{"operations":[{"type":"delete","key":"a-_b"}]}`, KindBadRequest, "operations[0].key"}, // URL alphabet
	{`{"operations":[{"type":"delete","key":["AA=="]}]}`, KindBadRequest, "operations[0].key"},
	{`{"operations":[{"type":"range_delete","begin":"AA==","end":""}]}`, KindBadRequest, "operations[0].end"},
	{`{"operations":[{"type":"Write","key":"AA==","value":""}]}`, KindBadRequest, "operations[0].type"},
	{`{"operations":[{"type":"write_everything","key":"AA==","value":""}]}`, KindBadRequest, "operations[0].type"},
	{`{"operations":[{"type":"write","key":"AA==","value":"","extra":{"nested":[1,2]}}]}`, KindBadRequest, "operations[0]"},
	{`{"operations":[{"type":"write","key":"AA==","value":"\x"}]}`, KindBadRequest, "operations[0].value"},
	{`{"operations":[{"type":"write","key":"AA==","value":"\u00zz"}]}`, KindBadRequest, "operations[0].value"},
	{`{"operations":[{"type":"write","key":"AA==","value":"AA=="}}`, KindBadRequest, "operations[0]"},
	{`{"operations":[{"type":"write","key":"AA==","value":"AA=="]}`, KindBadRequest, "operations[0]"},
	{`{"operations":[{"type":"delete","key":"AA=="}`, KindBadRequest, ""},
	{`{"operations":[{"type":"delete","key":"AA==`, KindBadRequest, ""},
	{`{"operations":[{"type":"delete","key":"AA=="}]` + "\x00", KindBadRequest, ""},
	{"\xef\xbb\xbf{}", KindBadRequest, ""}, // a BOM is not JSON whitespace
	// Limits (default ones here; small ones in TestLimitsStreaming).
	{`{"operations":[{"type":"delete","key":"` + base64.StdEncoding.EncodeToString(make([]byte, DefaultMaxKeyBytes+1)) + `"}]}`, KindTooLarge, "operations[0].key"},
	{`{"operations":[{"type":"write","key":"","value":"` + base64.StdEncoding.EncodeToString(make([]byte, DefaultMaxValueBytes+1)) + `"}]}`, KindTooLarge, "operations[0].value"},
	{`{"operations":[` + strings.Repeat(`{"type":"delete","key":""},`, DefaultMaxOperations) + `{"type":"delete","key":""}]}`, KindTooLarge, "operations"},
}

func init() {
	// The placeholder above: an unknown field in a precondition.
	validDocs = append(validDocs[:10], validDocs[11:]...)
	invalidDocs = append(invalidDocs, struct {
		doc   string
		kind  ErrorKind
		field string
	}{`{"preconditions":[{"type":"point_read","key":"AA==","version":null,"version2":1}]}`, KindBadRequest, "preconditions[0]"})
}

// outcome is what a parse produced, as one comparable string.
func outcome(c *tx.Commit, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return render(c)
}

// parseChunks feeds body in the given pieces to a reused parser.
func parseChunks(p *Parser, a *arena.Arena, c *tx.Commit, pieces [][]byte) error {
	a.Reset()
	p.Reset(a, c)
	for _, piece := range pieces {
		if err := p.Write(piece); err != nil {
			return err
		}
	}
	return p.Finish()
}

// checkSplits parses doc whole, split at every offset into two pieces (and
// into three, at many offset pairs, for documents of up to maxThreeWay
// bytes), byte by byte and in random chunkings; every result must equal the
// whole-body one, which it returns.
func checkSplits(t *testing.T, lim Limits, doc []byte, rng *rand.Rand, maxThreeWay int) string {
	t.Helper()
	p, a, c := NewParser(lim), arena.New(256), &tx.Commit{}
	whole := outcome(c, parseChunks(p, a, c, [][]byte{doc}))
	check := func(how string, pieces [][]byte) {
		t.Helper()
		if got := outcome(c, parseChunks(p, a, c, pieces)); got != whole {
			t.Fatalf("doc %.200q split %s:\n got  %s\n want %s", doc, how, got, whole)
		}
	}
	for i := 0; i <= len(doc); i++ {
		check(fmt.Sprintf("at %d", i), [][]byte{doc[:i], doc[i:]})
		if len(doc) <= maxThreeWay {
			for j := i; j <= len(doc); j += 1 + j%7 {
				check(fmt.Sprintf("at %d,%d", i, j), [][]byte{doc[:i], doc[i:j], doc[j:]})
			}
		}
	}
	bytewise := make([][]byte, len(doc))
	for i := range doc {
		bytewise[i] = doc[i : i+1]
	}
	check("bytewise", bytewise)
	for r := 0; r < 20; r++ {
		var pieces [][]byte
		for rest := doc; len(rest) > 0; {
			n := rng.IntN(min(len(rest), 40) + 1)
			pieces = append(pieces, rest[:n])
			rest = rest[n:]
		}
		check(fmt.Sprintf("randomly into %d pieces", len(pieces)), pieces)
	}
	return whole
}

// corpusThreeWay bounds the corpus documents split three ways (quadratic
// in the length) to keep -short runs, which CI makes under -race, quick.
func corpusThreeWay() int {
	if testing.Short() {
		return 80
	}
	return 300
}

func newRand(t *testing.T) *rand.Rand {
	seed := uint64(rand.Int64())
	t.Logf("chunking seed %d", seed)
	return rand.New(rand.NewPCG(seed, 1))
}

func TestValidDocuments(t *testing.T) {
	rng := newRand(t)
	for i, tc := range validDocs {
		got := checkSplits(t, Limits{}, []byte(tc.doc), rng, corpusThreeWay())
		if got != tc.want {
			t.Errorf("valid doc %d %q:\n got  %s\n want %s", i, tc.doc, got, tc.want)
		}
		ref, err := refParse([]byte(tc.doc), Limits{})
		if err != nil || render(ref) != got {
			t.Errorf("valid doc %d: reference says %v / %s", i, err, outcome(ref, err))
		}
	}
}

func TestInvalidDocuments(t *testing.T) {
	rng := newRand(t)
	for i, tc := range invalidDocs {
		doc := []byte(tc.doc)
		if len(doc) > 2000 && testing.Short() {
			continue
		}
		var got string
		if len(doc) > 2000 {
			got = outcome(nil, NewParser(Limits{}).Parse(arena.New(0), &tx.Commit{}, doc))
		} else {
			got = checkSplits(t, Limits{}, doc, rng, corpusThreeWay())
		}
		p := NewParser(Limits{})
		err := p.Parse(arena.New(0), &tx.Commit{}, doc)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("invalid doc %d %.100q: accepted (%s)", i, tc.doc, got)
			continue
		}
		if e.Kind != tc.kind || e.Field != tc.field {
			t.Errorf("invalid doc %d %.100q: got kind %v field %q (%v), want kind %v field %q", i, tc.doc, e.Kind, e.Field, e, tc.kind, tc.field)
		}
		if _, err := refParse(doc, Limits{}); err == nil {
			t.Errorf("invalid doc %d %.100q: the reference accepts it", i, tc.doc)
		}
	}
}

// TestLimitsStreaming: a limit is reported while the body streams in, as
// soon as it is known to be exceeded, not at Finish.
func TestLimitsStreaming(t *testing.T) {
	lim := Limits{MaxBodyBytes: 1000, MaxKeyBytes: 3, MaxValueBytes: 6, MaxPreconditions: 1, MaxOperations: 2}
	cases := []struct {
		prefix string
		field  string
	}{
		{`{"operations":[{"type":"delete","key":"AAAAAAAA`, "operations[0].key"}, // 8 chars: > 3 bytes
		{`{"operations":[{"type":"write","key":"","value":"AAAAAAAAAAAA`, "operations[0].value"},
		{`{"operations":[{"type":"delete","key":""},{"type":"delete","key":""},{`, "operations"},
		{`{"read_version":1,"preconditions":[{"type":"point_read","key":""},{`, "preconditions"},
		{`{"request_id":"` + strings.Repeat("x", 1000), ""},
	}
	for _, tc := range cases {
		p := NewParser(lim)
		p.Reset(arena.New(0), &tx.Commit{})
		err := p.Write([]byte(tc.prefix))
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindTooLarge || e.Field != tc.field {
			t.Errorf("prefix %.80q: got %v, want TooLarge at %q", tc.prefix, err, tc.field)
		}
	}
	// A key exactly at the limit is fine; 4 encoded chars can hold 3 bytes.
	p := NewParser(lim)
	if err := p.Parse(arena.New(0), &tx.Commit{}, []byte(`{"operations":[{"type":"delete","key":"AAAA"}]}`)); err != nil {
		t.Errorf("key at the limit: %v", err)
	}
}

func TestErrorMessage(t *testing.T) {
	err := NewParser(Limits{}).Parse(arena.New(0), &tx.Commit{}, []byte(`{"operations":[{},{},{},{"type":"delete","key":"!!!!"}]}`))
	if err == nil {
		t.Fatal("accepted")
	}
	// The first element is refused first ("missing type").
	if got := err.Error(); got != "operations[0].type: missing" {
		t.Errorf("got %q", got)
	}
	err = NewParser(Limits{}).Parse(arena.New(0), &tx.Commit{}, []byte(`{"operations":[{"type":"delete","key":"AA=="},{"type":"delete","key":"AA=="},{"type":"delete","key":"AA=="},{"type":"delete","key":"!!!!"}]}`))
	if got := fmt.Sprint(err); got != "operations[3].key: invalid base64" {
		t.Errorf("got %q", got)
	}
}

func TestStickyErrorAndReuse(t *testing.T) {
	p, a, c := NewParser(Limits{}), arena.New(0), &tx.Commit{}
	if err := p.Write([]byte("{}")); err == nil {
		t.Fatal("Write before Reset accepted")
	}
	p.Reset(a, c)
	err1 := p.Write([]byte(`{"x"`))
	err2 := p.Write([]byte(`:1}`))
	if err1 == nil || err2 != err1 || p.Finish() != err1 {
		t.Fatalf("error not sticky: %v, %v", err1, err2)
	}
	// The same parser parses the next body from scratch.
	if err := p.Parse(a, c, []byte(`{"read_version":5}`)); err != nil || c.ReadVersion != 5 {
		t.Fatalf("reuse after error: %v %+v", err, c)
	}
}

// TestValuesDoNotAliasInput: values live in the arena, not in the chunks fed
// to Write (which the caller may reuse at once).
func TestValuesDoNotAliasInput(t *testing.T) {
	doc := []byte(`{"leader_id":"abc","operations":[{"type":"write","key":"a2V5","value":"dmFs"}]}`)
	p, a, c := NewParser(Limits{}), arena.New(0), &tx.Commit{}
	p.Reset(a, c)
	buf := make([]byte, 8)
	for rest := doc; len(rest) > 0; {
		n := copy(buf, rest)
		if err := p.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		clear(buf)
		rest = rest[n:]
	}
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	if string(c.LeaderID) != "abc" || string(c.Operations[0].Key) != "key" || string(c.Operations[0].Value) != "val" {
		t.Fatalf("values alias the input buffer: %s", render(c))
	}
	full := append([]byte(nil), doc...)
	if err := p.Parse(a, c, full); err != nil {
		t.Fatal(err)
	}
	clear(full)
	if string(c.Operations[0].Value) != "val" {
		t.Fatalf("fast path aliases the input: %q", c.Operations[0].Value)
	}
}

// TestRandomDocuments generates commit bodies from the grammar (valid ones
// and mutated ones) and checks split-invariance and agreement with the
// reference.
func TestRandomDocuments(t *testing.T) {
	rng := newRand(t)
	n, maxThreeWay := 300, 200
	if testing.Short() {
		n, maxThreeWay = 40, 0
	}
	lim := Limits{MaxBodyBytes: 1 << 14, MaxKeyBytes: 8, MaxValueBytes: 20, MaxPreconditions: 4, MaxOperations: 4}
	for i := 0; i < n; i++ {
		doc := genDoc(rng)
		if rng.IntN(2) == 0 {
			doc = mutate(rng, doc)
		}
		got := checkSplits(t, lim, doc, rng, maxThreeWay)
		ref, err := refParse(doc, lim)
		if want := outcome(ref, err); (err == nil) != !strings.HasPrefix(got, "error: ") || (err == nil && want != got) {
			t.Fatalf("doc %q:\n parser    %s\n reference %s", doc, got, want)
		}
	}
}

func genB64(rng *rand.Rand, maxLen int) string {
	b := make([]byte, rng.IntN(maxLen+1))
	for i := range b {
		b[i] = byte(rng.IntN(4))
	}
	return base64.StdEncoding.EncodeToString(b)
}

func genDoc(rng *rand.Rand) []byte {
	var members []string
	if rng.IntN(2) == 0 {
		members = append(members, `"request_id":"req-`+strings.Repeat("x", 10+rng.IntN(20))+`"`)
	}
	if rng.IntN(3) == 0 {
		members = append(members, `"leader_id":"L\u00e9`+fmt.Sprint(rng.IntN(100))+`"`)
	}
	if rng.IntN(2) == 0 {
		members = append(members, fmt.Sprintf(`"read_version":%d`, rng.Uint64()>>rng.IntN(64)))
	}
	var pres []string
	for i := rng.IntN(6); i > 0; i-- {
		var f []string
		if rng.IntN(2) == 0 {
			f = append(f, `"type":"point_read"`, `"key":"`+genB64(rng, 9)+`"`)
		} else {
			f = append(f, `"type":"range_read"`, `"begin":"`+genB64(rng, 3)+`"`, `"end":"`+genB64(rng, 3)+`"`)
		}
		if rng.IntN(2) == 0 {
			f = append(f, fmt.Sprintf(`"version":%d`, rng.IntN(1000)))
		}
		rng.Shuffle(len(f), func(i, j int) { f[i], f[j] = f[j], f[i] })
		pres = append(pres, "{"+strings.Join(f, ",")+"}")
	}
	if len(pres) > 0 || rng.IntN(4) == 0 {
		members = append(members, `"preconditions":[`+strings.Join(pres, ", ")+`]`)
	}
	var ops []string
	for i := rng.IntN(6); i > 0; i-- {
		var f []string
		switch rng.IntN(3) {
		case 0:
			f = append(f, `"type":"write"`, `"key":"`+genB64(rng, 9)+`"`, `"value":"`+genB64(rng, 21)+`"`)
		case 1:
			f = append(f, `"type":"delete"`, `"key":"`+genB64(rng, 9)+`"`)
		default:
			f = append(f, `"type":"range_delete"`, `"begin":"`+genB64(rng, 3)+`"`, `"end":"`+genB64(rng, 3)+`"`)
		}
		rng.Shuffle(len(f), func(i, j int) { f[i], f[j] = f[j], f[i] })
		ops = append(ops, "{"+strings.Join(f, ",")+"}")
	}
	if len(ops) > 0 || rng.IntN(4) == 0 {
		members = append(members, `"operations":[`+strings.Join(ops, ",\n")+`]`)
	}
	rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	return []byte("{" + strings.Join(members, ", ") + "}")
}

// mutate damages a document a little: a byte changed, dropped or doubled,
// or an escape put in place of a character.
func mutate(rng *rand.Rand, doc []byte) []byte {
	if len(doc) == 0 {
		return doc
	}
	i := rng.IntN(len(doc))
	switch rng.IntN(4) {
	case 0:
		doc[i] = "{}[],:\"\\ 0-.eE9nAa=/u"[rng.IntN(21)]
	case 1:
		doc = append(doc[:i:i], doc[i+1:]...)
	case 2:
		doc = append(doc[:i+1:i+1], doc[i:]...)
	default:
		if doc[i] >= 0x20 && doc[i] < 0x7f {
			esc := fmt.Sprintf(`\u%04x`, doc[i])
			doc = append(append(doc[:i:i], esc...), doc[i+1:]...)
		}
	}
	return doc
}

// TestIndexQuoteOrBackslash checks the word-at-a-time search against a
// plain loop, with the target at every position and bytes around it that
// provoke borrows (0x21, 0x5b, 0x00, 0xff).
func TestIndexQuoteOrBackslash(t *testing.T) {
	naive := func(s []byte) int {
		for i, c := range s {
			if c == '"' || c == '\\' {
				return i
			}
		}
		return -1
	}
	fillers := []byte{'a', 0x21, 0x5b, 0x00, 0xff, 0x23, 0x5d}
	for n := 0; n < 150; n++ {
		for _, fill := range fillers {
			s := bytes.Repeat([]byte{fill}, n)
			if got, want := indexQuoteOrBackslash(s), naive(s); got != want {
				t.Fatalf("len %d fill %#x: got %d want %d", n, fill, got, want)
			}
			for pos := 0; pos < n; pos++ {
				for _, target := range []byte{'"', '\\'} {
					s[pos] = target
					if pos+1 < n {
						s[pos+1] = "\"\\"[pos%2]
					}
					if got, want := indexQuoteOrBackslash(s), naive(s); got != want {
						t.Fatalf("%q: got %d want %d", s, got, want)
					}
					s[pos] = fill
					if pos+1 < n {
						s[pos+1] = fill
					}
				}
			}
		}
	}
}
