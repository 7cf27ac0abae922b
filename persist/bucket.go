package persist

import (
	"fmt"
	"strings"
)

// ValidBucketName checks an S3 bucket name against the rules S3 (and the
// fake S3) enforce: 3 to 63 characters of lowercase letters, digits, '.'
// and '-', starting and ending with a letter or digit, no "..". Config
// validation uses it so that a name the server would refuse fails at start
// with the field named, not at the first request.
func ValidBucketName(name string) error {
	if len(name) < 3 || len(name) > 63 {
		return fmt.Errorf("bucket name %q: length must be 3 to 63", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if !alnum && c != '.' && c != '-' {
			return fmt.Errorf("bucket name %q: invalid character %q (lowercase letters, digits, '.' and '-')", name, c)
		}
		if (i == 0 || i == len(name)-1) && !alnum {
			return fmt.Errorf("bucket name %q: must start and end with a letter or digit", name)
		}
	}
	if strings.Contains(name, "..") {
		return fmt.Errorf("bucket name %q: two adjacent periods", name)
	}
	return nil
}
