//go:build planted_damage

package disk

// The planted bug: no damage checks. To see tests/fault catch it:
//
//	go build -tags planted_damage -o /tmp/weaseldb-planted ./cmd/weaseldb
//	WEASELDB_TEST_BIN=/tmp/weaseldb-planted go test ./tests/fault -run UnderServer
const damageChecksOff = true
