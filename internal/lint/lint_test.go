// Package lint holds the house rules as tests (STYLE.md, after pebble's
// internal/lint): which packages may import which, so that the layering of
// DESIGN.md cannot erode silently.
package lint

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

type pkgInfo struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "weaseldb/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkgInfo
	for dec.More() {
		var p pkgInfo
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// rule forbids packages under a prefix from depending (directly or not) on
// any of the listed packages or package prefixes.
type rule struct {
	pkgPrefix string
	forbidden []string
	why       string
}

var rules = []rule{
	{"weaseldb/engine", []string{"weaseldb/netpoll", "net/http", "weaseldb/persist/disk", "weaseldb/persist/s3log", "weaseldb/persist/fakes3", "weaseldb/httpapi", "github.com/prometheus/"},
		"the engine is a library: no network, no HTTP, no concrete backend, no metrics registry"},
	{"weaseldb/netpoll", []string{"weaseldb/engine", "weaseldb/persist", "weaseldb/httpapi"},
		"netpoll knows nothing of the database"},
	{"weaseldb/persist", []string{"weaseldb/engine", "weaseldb/httpapi"},
		"persistence knows nothing of the engine"},
	{"weaseldb/jsonstream", []string{"encoding/json", "weaseldb/engine", "weaseldb/netpoll"},
		"the commit parser is hand-written and standalone"},
	{"weaseldb/arena", []string{"weaseldb/"}, "the arena stands alone"},
	{"weaseldb/tx", []string{"weaseldb/"}, "the shared types import nothing of ours"},
	{"weaseldb/client", []string{"weaseldb/engine", "weaseldb/netpoll", "weaseldb/persist", "weaseldb/httpapi", "weaseldb/jsonstream"},
		"clients speak HTTP only"},
	{"weaseldb/loadgen", []string{"weaseldb/engine", "weaseldb/persist", "weaseldb/httpapi", "weaseldb/netpoll"},
		"loadgen speaks HTTP only"},
}

func TestImportRules(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, r := range rules {
			if !strings.HasPrefix(p.ImportPath, r.pkgPrefix) {
				continue
			}
			for _, dep := range p.Deps {
				for _, bad := range r.forbidden {
					// "weaseldb/" forbids every package of ours (but a package
					// may of course not forbid itself).
					if dep == bad || (strings.HasSuffix(bad, "/") && strings.HasPrefix(dep, bad)) || strings.HasPrefix(dep, bad+"/") {
						if strings.HasPrefix(dep, r.pkgPrefix) {
							continue
						}
						t.Errorf("%s depends on %s: %s", p.ImportPath, dep, r.why)
					}
				}
			}
		}
	}
}
