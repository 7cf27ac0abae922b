//go:build weaseldb_plant_recover_deletes

package s3log

// plantedRecoverDeletes re-plants issue 12 item 1 (Recover deleting what it
// discards before this server won the log), to show that
// tests/s3fault TestTakeoverUnderLoad catches it:
//
//	go build -tags weaseldb_plant_recover_deletes -o /tmp/weaseldb-planted ./cmd/weaseldb
//	WEASELDB_TEST_BIN=/tmp/weaseldb-planted go test ./tests/s3fault -run TestTakeoverUnderLoad -v
//
// Never in a release build: the tag is set by hand only.
const plantedRecoverDeletes = true
