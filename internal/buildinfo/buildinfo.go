// Package buildinfo says which build is running: the release version (set
// with -ldflags "-X main.version=..."), the VCS revision and time the Go
// toolchain stamped into the binary, and the Go version. `weaseldb
// --version`, `weaseldb fakes3 --version`, the start-up log line and the
// weaseldb_build_info metric all print it from here, so they agree.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info describes one build.
type Info struct {
	Version   string // release version, e.g. "0.1.0-dev"
	Revision  string // VCS revision (full hash), "unknown" when not stamped
	Time      string // VCS commit time (RFC 3339), "" when not stamped
	Modified  bool   // the work tree had uncommitted changes
	GoVersion string // e.g. "go1.24.1"
}

// Read returns the running binary's build information; version is the
// release version the binary was linked with, revision a VCS revision
// linked in the same way (the Makefile passes `git rev-parse HEAD`), used
// when the toolchain stamped none (GOFLAGS=-buildvcs=false, a build outside
// the repository or from a git worktree); "" if unknown.
func Read(version, revision string) Info {
	i := Info{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	if revision != "" {
		i.Revision, i.Modified = strings.CutSuffix(revision, "+dirty")
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// ShortRevision is the revision cut to 12 hex digits, with "+dirty" when
// the work tree was modified.
func (i Info) ShortRevision() string {
	r := i.Revision
	if len(r) > 12 {
		r = r[:12]
	}
	if i.Modified {
		r += "+dirty"
	}
	return r
}

// Line is the --version line: "<name> <version> (revision <rev>[, <time>], <go>)".
func (i Info) Line(name string) string {
	when := ""
	if i.Time != "" {
		when = ", " + i.Time
	}
	return fmt.Sprintf("%s %s (revision %s%s, %s)", name, i.Version, i.ShortRevision(), when, i.GoVersion)
}
