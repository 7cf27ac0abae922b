package lint

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// bannedTime are the package time functions that read the clock or make a
// timer. The engine gets those from its Env (internal/clock), so that
// engine/sim can run it on simulated time (STYLE.md: raft's rawnode).
var bannedTime = map[string]bool{
	"Now": true, "Since": true, "Until": true, "NewTimer": true, "NewTicker": true,
	"After": true, "AfterFunc": true, "Tick": true, "Sleep": true,
}

// TestEngineReadsNoClock: no non-test file under engine/ uses a banned
// function of package time (called or taken as a value).
func TestEngineReadsNoClock(t *testing.T) {
	root := filepath.Join("..", "..", "engine")
	var checked int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		checked++
		for _, bad := range timeUses(t, path) {
			t.Errorf("%s: uses time.%s; take it from the engine's Env (internal/clock) instead", bad.pos, bad.name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatalf("no Go files found under %s", root)
	}
}

type timeUse struct {
	pos  token.Position
	name string
}

func timeUses(t *testing.T, path string) []timeUse {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	names := map[string]bool{}
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if p != "time" {
			continue
		}
		if imp.Name != nil {
			if imp.Name.Name == "." {
				t.Errorf("%s: dot-imports package time", path)
			}
			names[imp.Name.Name] = true
		} else {
			names["time"] = true
		}
	}
	var uses []timeUse
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && names[id.Name] && bannedTime[sel.Sel.Name] {
			uses = append(uses, timeUse{fset.Position(sel.Pos()), sel.Sel.Name})
		}
		return true
	})
	return uses
}
