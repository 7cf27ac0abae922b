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
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "github.com/weaseldb/weaseldb/...").Output()
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
	// A pattern that matches nothing is not an error for go list: without
	// this the rules would pass by checking no package at all.
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages of ours; is the module path right?", len(pkgs))
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
	{"github.com/weaseldb/weaseldb/engine", []string{"github.com/weaseldb/weaseldb/netpoll", "net/http", "github.com/weaseldb/weaseldb/persist/disk", "github.com/weaseldb/weaseldb/persist/s3log", "github.com/weaseldb/weaseldb/persist/fakes3", "github.com/weaseldb/weaseldb/httpapi", "github.com/prometheus/"},
		"the engine is a library: no network, no HTTP, no concrete backend, no metrics registry"},
	{"github.com/weaseldb/weaseldb/netpoll", []string{"github.com/weaseldb/weaseldb/engine", "github.com/weaseldb/weaseldb/persist", "github.com/weaseldb/weaseldb/httpapi"},
		"netpoll knows nothing of the database"},
	{"github.com/weaseldb/weaseldb/persist", []string{"github.com/weaseldb/weaseldb/engine", "github.com/weaseldb/weaseldb/httpapi"},
		"persistence knows nothing of the engine"},
	{"github.com/weaseldb/weaseldb/jsonstream", []string{"encoding/json", "github.com/weaseldb/weaseldb/engine", "github.com/weaseldb/weaseldb/netpoll"},
		"the commit parser is hand-written and standalone"},
	{"github.com/weaseldb/weaseldb/arena", []string{"github.com/weaseldb/weaseldb/"}, "the arena stands alone"},
	{"github.com/weaseldb/weaseldb/tx", []string{"github.com/weaseldb/weaseldb/"}, "the shared types import nothing of ours"},
	{"github.com/weaseldb/weaseldb/client", []string{"github.com/weaseldb/weaseldb/engine", "github.com/weaseldb/weaseldb/netpoll", "github.com/weaseldb/weaseldb/persist", "github.com/weaseldb/weaseldb/httpapi", "github.com/weaseldb/weaseldb/jsonstream"},
		"clients speak HTTP only"},
	{"github.com/weaseldb/weaseldb/loadgen", []string{"github.com/weaseldb/weaseldb/engine", "github.com/weaseldb/weaseldb/persist", "github.com/weaseldb/weaseldb/httpapi", "github.com/weaseldb/weaseldb/netpoll"},
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
					// "github.com/weaseldb/weaseldb/" forbids every package of ours (but a package
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
