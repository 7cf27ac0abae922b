//go:build plant_nofence

package s3log

// plantNoFence: see plant_nofence_off.go. A planted bug, for tests only:
//
//	go build -tags plant_nofence -o /tmp/weaseldb-plant ./cmd/weaseldb
//	WEASELDB_TEST_BIN=/tmp/weaseldb-plant go test ./tests/failover -run TestPausedLeader -v
const plantNoFence = true
