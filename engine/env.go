package engine

import (
	"encoding/binary"
	"encoding/hex"
)

// newLeaderID returns a leader id (32 hex digits) from the Env's random
// source, so that a simulated run names its leaders from its seed. The
// production source (math/rand/v2's runtime-seeded ChaCha8) makes 128-bit
// collisions as unlikely as crypto/rand does; cmd/weaseldb still calls
// NewLeaderID (crypto/rand) for the id it keeps per process.
func newLeaderID(rand func() uint64) []byte {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand())
	binary.LittleEndian.PutUint64(b[8:], rand())
	return hex.AppendEncode(make([]byte, 0, 32), b[:])
}
