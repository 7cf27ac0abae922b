package persist

import (
	"encoding/json"
	"fmt"

	"github.com/weaseldb/weaseldb/tx"
)

// policiesDocument is the stored form of the retention policies, the same in
// every backend (disk: retention.json; S3: <prefix>/retention.json), so a log
// copied between backends keeps its policies.
type policiesDocument struct {
	Policies map[string]tx.Version `json:"policies"`
}

// EncodePolicies returns the stored form of policies.
func EncodePolicies(policies map[string]tx.Version) ([]byte, error) {
	data, err := json.Marshal(policiesDocument{Policies: policies})
	if err != nil {
		return nil, fmt.Errorf("persist: encode policies: %w", err)
	}
	return data, nil
}

// DecodePolicies parses the stored form of the policies; damage is an error
// wrapping ErrCorruption. It never returns a nil map.
func DecodePolicies(data []byte) (map[string]tx.Version, error) {
	var doc policiesDocument
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: retention policies: %v", ErrCorruption, err)
	}
	if doc.Policies == nil {
		doc.Policies = map[string]tx.Version{}
	}
	return doc.Policies, nil
}
