// This file enforces "the one rule" of DESIGN.md on the code under orch/: the core is
// deterministic by construction. A simulation replays a run from its seed only if nothing in
// the core depends on the Go scheduler, the wall clock, a global random source or map
// iteration order, so every non-test .go file under orch/ (except testdata/ and the nodetest/
// helper) must not:
//
//   - use time.Now, Sleep, After, AfterFunc, NewTimer, NewTicker, Tick, Since or Until
//     (renamed and dot imports are resolved);
//   - import math/rand (v1) or crypto/rand, or call a top-level math/rand/v2 function other
//     than the constructors New, NewPCG, NewChaCha8 and NewZipf;
//   - contain a go statement, a select statement or make(chan ...);
//   - range over a map (or over maps.Keys/Values/All) unless the for line carries the marker
//     comment //det:sorted, meaning the loop only collects keys that are sorted afterwards or
//     its order cannot leak. `for range m` (no key, no value) is allowed: its iterations are
//     indistinguishable.
//
// It also requires a package doc comment on every package under orch/.
//
// How: each package is parsed and type-checked with go/types (standard library imports from
// source, module-local imports from the packages checked here), and type errors are ignored,
// so code that does not compile yet is still checked. Where an expression has no type (a
// missing import, or the checker run without types), a syntactic fallback decides: a package
// is recognised by its import name, and a range expression counts as a map when it is an
// identifier or selector whose name is declared with a map type somewhere in the same package
// (a var, field, parameter, make(map...) or map literal, or a named map type). The fallback
// matches names, not scopes, so it can both miss (maps returned by calls, maps from other
// packages) and over-report (a slice sharing a name with a map). All files of a package are
// checked whatever their build tags, so both sides of a //go:build split are covered.
package orch

import (
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCoreIsDeterministicByConstruction(t *testing.T) {
	start := time.Now()
	findings, err := checkDeterminism(".", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Errorf("orch/%s", f)
	}
	t.Logf("checked orch/ in %v", time.Since(start).Round(time.Millisecond))
}

func TestDeterminismCheckerCatchesViolations(t *testing.T) {
	dir := filepath.Join("..", "testdata", "determinism", "violations")
	wants := plantedViolations(t, dir)
	t.Run("typed", func(t *testing.T) {
		got, err := checkDeterminism(dir, true)
		if err != nil {
			t.Fatal(err)
		}
		compareFindings(t, got, wants, true)
	})
	t.Run("untyped fallback", func(t *testing.T) {
		got, err := checkDeterminism(dir, false)
		if err != nil {
			t.Fatal(err)
		}
		compareFindings(t, got, wantsUntyped(wants), false)
	})
	t.Run("clean", func(t *testing.T) {
		got, err := checkDeterminism(filepath.Join("..", "testdata", "determinism", "clean"), true)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range got {
			t.Errorf("clean sample reported: %s", f)
		}
	})
}

// --- findings ---

// Kinds of finding.
const (
	kindTime      = "time"
	kindRand      = "rand"
	kindGoroutine = "goroutine"
	kindSelect    = "select"
	kindChan      = "chan"
	kindMapRange  = "maprange"
	kindPkgDoc    = "pkgdoc"
)

type finding struct {
	pos  token.Position
	kind string
	what string
	why  string
}

func (f finding) String() string {
	return fmt.Sprintf("%s:%d: [%s] %s: %s", f.pos.Filename, f.pos.Line, f.kind, f.what, f.why)
}

const (
	whyTimer    = "starts a runtime timer that fires on another goroutine, outside virtual time; use env.After"
	whyClock    = "reads the wall clock, which a replay cannot reproduce; use env.Now() (and env.After to measure durations)"
	whyGlobal   = "draws from the global random source, which no run seed controls; draw from env.Rand()"
	whyMapOrder = "map iteration order is random and can leak into messages, logs, IDs or choices; " +
		"iterate sorted keys or an ordered slice, or mark the for line //det:sorted if the loop only " +
		"collects keys that are sorted afterwards or its order cannot leak"
)

var bannedTime = map[string]string{
	"Now":       whyClock,
	"Since":     whyClock,
	"Until":     whyClock,
	"Sleep":     "blocks the single-threaded event loop; set an env.After timer and handle its message",
	"After":     whyTimer,
	"AfterFunc": whyTimer,
	"NewTimer":  whyTimer,
	"NewTicker": whyTimer,
	"Tick":      whyTimer,
}

var bannedImports = map[string]string{
	"math/rand":   "math/rand (v1) has a global source shared by the whole process; draw from env.Rand() (math/rand/v2)",
	"crypto/rand": "crypto/rand reads OS entropy, which no seed can replay; draw from env.Rand()",
}

// randAllowed are the math/rand/v2 names that do not touch the global source: constructors,
// and (for the untyped fallback, which cannot tell a type from a function) types.
var randAllowed = map[string]bool{
	"New": true, "NewPCG": true, "NewChaCha8": true, "NewZipf": true,
	"Rand": true, "Source": true, "PCG": true, "ChaCha8": true, "Zipf": true,
}

// mapIterators are the functions of package maps that yield in map order.
var mapIterators = map[string]bool{"Keys": true, "Values": true, "All": true}

// --- walking and loading ---

// checkDeterminism checks every package under root (skipping testdata/ and nodetest/ folders
// and _test.go files) and returns its findings in file and line order. With typed false it
// skips type-checking, so that the syntactic fallback alone decides.
func checkDeterminism(root string, typed bool) ([]finding, error) {
	dirs, err := packageDirs(root)
	if err != nil {
		return nil, err
	}
	l, err := newLoader(root, typed)
	if err != nil {
		return nil, err
	}
	var out []finding
	for _, dir := range dirs {
		p, err := l.load(dir)
		if err != nil {
			return nil, err
		}
		out = append(out, checkPackage(l.fset, p)...)
	}
	slices.SortFunc(out, func(a, b finding) int {
		return cmpPos(a.pos, b.pos)
	})
	return out, nil
}

func cmpPos(a, b token.Position) int {
	if c := strings.Compare(a.Filename, b.Filename); c != 0 {
		return c
	}
	return a.Line - b.Line
}

// packageDirs lists the directories under root that hold non-test .go files.
func packageDirs(root string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (d.Name() == "testdata" || d.Name() == "nodetest") {
			return filepath.SkipDir
		}
		if !d.IsDir() && isSourceFile(d.Name()) && !slices.Contains(dirs, filepath.Dir(path)) {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	return dirs, err
}

func isSourceFile(name string) bool {
	return strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")
}

type pkg struct {
	files []*ast.File
	info  *types.Info
	types *types.Package
}

// loader parses and type-checks packages, each once. It is the types.Importer for
// module-local imports and hands everything else to the source importer.
type loader struct {
	fset    *token.FileSet
	typed   bool
	std     types.Importer
	modPath string
	modRoot string
	pkgs    map[string]*pkg // by directory; nil while loading
}

func newLoader(root string, typed bool) (*loader, error) {
	modRoot, modPath, err := findModule(root)
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	return &loader{
		fset: fset, typed: typed, std: importer.ForCompiler(fset, "source", nil),
		modPath: modPath, modRoot: modRoot, pkgs: map[string]*pkg{},
	}, nil
}

// findModule finds the go.mod above dir and returns its directory and module path.
func findModule(dir string) (root, path string, err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return "", "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(data)
			if m == nil {
				return "", "", fmt.Errorf("%s/go.mod has no module line", dir)
			}
			return dir, string(m[1]), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", "", errors.New("no go.mod above the package directory")
		}
		dir = parent
	}
}

func (l *loader) load(dir string) (*pkg, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if p, ok := l.pkgs[abs]; ok {
		if p == nil {
			return nil, fmt.Errorf("import cycle through %s", dir)
		}
		return p, nil
	}
	l.pkgs[abs] = nil
	files, err := l.parseDir(dir)
	if err != nil {
		return nil, err
	}
	p := &pkg{files: files, info: &types.Info{
		Types: map[ast.Expr]types.TypeAndValue{},
		Uses:  map[*ast.Ident]types.Object{},
	}}
	if l.typed && len(files) > 0 {
		conf := types.Config{Importer: l, Error: func(error) {}}
		p.types, _ = conf.Check(l.importPath(abs), l.fset, files, p.info)
	}
	l.pkgs[abs] = p
	return p, nil
}

func (l *loader) parseDir(dir string) ([]*ast.File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []*ast.File
	for _, e := range entries {
		if e.IsDir() || !isSourceFile(e.Name()) {
			continue
		}
		f, err := parser.ParseFile(l.fset, filepath.Join(dir, e.Name()), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func (l *loader) importPath(absDir string) string {
	rel, err := filepath.Rel(l.modRoot, absDir)
	if err != nil || rel == "." {
		return l.modPath
	}
	return l.modPath + "/" + filepath.ToSlash(rel)
}

// Import implements types.Importer.
func (l *loader) Import(path string) (*types.Package, error) {
	rel, ok := strings.CutPrefix(path, l.modPath+"/")
	if !ok {
		return l.std.Import(path)
	}
	p, err := l.load(filepath.Join(l.modRoot, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	if p.types == nil {
		return nil, fmt.Errorf("%s did not type-check", path)
	}
	return p.types, nil
}

// --- checks ---

func checkPackage(fset *token.FileSet, p *pkg) []finding {
	var out []finding
	if f := missingDoc(p.files); f != nil {
		out = append(out, finding{pos: fset.Position(f.Package), kind: kindPkgDoc,
			what: "package " + f.Name.Name + " has no package doc comment",
			why:  "every package of the core says what it is for, so the rule and its exceptions stay reviewable"})
	}
	maps := mapNames(p.files)
	for _, f := range p.files {
		c := &fileCheck{fset: fset, info: p.info, imports: importNames(f),
			sorted: sortedLines(fset, f), maps: maps}
		c.checkImports(f)
		ast.Inspect(f, c.visit)
		out = append(out, c.out...)
	}
	return out
}

// missingDoc returns the package's first file when no file has a package doc comment.
func missingDoc(files []*ast.File) *ast.File {
	if len(files) == 0 {
		return nil
	}
	for _, f := range files {
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			return nil
		}
	}
	return slices.MinFunc(files, func(a, b *ast.File) int { return int(a.Package - b.Package) })
}

// importNames maps each import's local name in f to its path.
func importNames(f *ast.File) map[string]string {
	names := map[string]string{}
	for _, spec := range f.Imports {
		path, _ := strconv.Unquote(spec.Path.Value)
		name := path[strings.LastIndex(path, "/")+1:]
		if path == "math/rand/v2" {
			name = "rand"
		}
		if spec.Name != nil {
			name = spec.Name.Name
		}
		names[name] = path
	}
	return names
}

// sortedLines returns the lines of f that carry a //det:sorted comment.
func sortedLines(fset *token.FileSet, f *ast.File) map[int]bool {
	lines := map[int]bool{}
	for _, g := range f.Comments {
		for _, c := range g.List {
			if strings.HasPrefix(c.Text, "//det:sorted") {
				lines[fset.Position(c.Slash).Line] = true
			}
		}
	}
	return lines
}

type fileCheck struct {
	fset    *token.FileSet
	info    *types.Info
	imports map[string]string // local name -> import path
	sorted  map[int]bool      // lines marked //det:sorted
	maps    map[string]bool   // names declared with a map type (fallback)
	out     []finding
}

func (c *fileCheck) report(pos token.Pos, kind, what, why string) {
	c.out = append(c.out, finding{pos: c.fset.Position(pos), kind: kind, what: what, why: why})
}

func (c *fileCheck) checkImports(f *ast.File) {
	for _, spec := range f.Imports {
		path, _ := strconv.Unquote(spec.Path.Value)
		if why, ok := bannedImports[path]; ok {
			c.report(spec.Pos(), kindRand, "imports "+path, why)
		}
	}
}

func (c *fileCheck) visit(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.GoStmt:
		c.report(n.Pos(), kindGoroutine, "go statement",
			"the Go scheduler, not the run seed, orders what a goroutine does; do the work inside Handle")
	case *ast.SelectStmt:
		c.report(n.Pos(), kindSelect, "select statement",
			"select picks among ready cases at random; react to one message at a time in Handle")
	case *ast.CallExpr:
		c.checkMakeChan(n)
	case *ast.RangeStmt:
		c.checkRange(n)
	case *ast.Ident:
		if obj, ok := c.info.Uses[n]; ok {
			c.checkRef(n.Pos(), typedFunc(obj))
		}
	case *ast.SelectorExpr:
		if _, typed := c.info.Uses[n.Sel]; !typed {
			c.checkRef(n.Pos(), c.guessFunc(n))
		}
	}
	return true
}

// funcRef names a package-level function (or, without type information, any pkg.Name).
type funcRef struct{ path, name string }

// typedFunc returns the package-level function obj names, or the zero funcRef.
func typedFunc(obj types.Object) funcRef {
	fn, ok := obj.(*types.Func)
	if !ok || fn.Pkg() == nil || fn.Type().(*types.Signature).Recv() != nil {
		return funcRef{}
	}
	return funcRef{path: fn.Pkg().Path(), name: fn.Name()}
}

// guessFunc resolves pkg.Name from the file's imports when there is no type information.
func (c *fileCheck) guessFunc(sel *ast.SelectorExpr) funcRef {
	x, ok := sel.X.(*ast.Ident)
	if !ok {
		return funcRef{}
	}
	if obj, typed := c.info.Uses[x]; typed {
		if pn, ok := obj.(*types.PkgName); ok {
			return funcRef{path: pn.Imported().Path(), name: sel.Sel.Name}
		}
		return funcRef{}
	}
	return funcRef{path: c.imports[x.Name], name: sel.Sel.Name}
}

// resolveFunc resolves the function an expression (f, pkg.F) refers to.
func (c *fileCheck) resolveFunc(e ast.Expr) funcRef {
	switch e := e.(type) {
	case *ast.Ident:
		return typedFunc(c.info.Uses[e])
	case *ast.SelectorExpr:
		if obj, typed := c.info.Uses[e.Sel]; typed {
			return typedFunc(obj)
		}
		return c.guessFunc(e)
	}
	return funcRef{}
}

func (c *fileCheck) checkRef(pos token.Pos, ref funcRef) {
	switch ref.path {
	case "time":
		if why, ok := bannedTime[ref.name]; ok {
			c.report(pos, kindTime, "time."+ref.name, why)
		}
	case "math/rand/v2":
		if !randAllowed[ref.name] {
			c.report(pos, kindRand, "rand."+ref.name+" (math/rand/v2)", whyGlobal)
		}
	}
}

func (c *fileCheck) checkMakeChan(call *ast.CallExpr) {
	fn, ok := call.Fun.(*ast.Ident)
	if !ok || fn.Name != "make" || len(call.Args) == 0 {
		return
	}
	if obj, typed := c.info.Uses[fn]; typed {
		if _, builtin := obj.(*types.Builtin); !builtin {
			return
		}
	}
	if c.isChan(call.Args[0]) {
		c.report(call.Pos(), kindChan, "make(chan ...)",
			"channels only connect goroutines, which the core never starts; send messages with env.Send or env.After")
	}
}

func (c *fileCheck) isChan(e ast.Expr) bool {
	if t := c.info.TypeOf(e); t != nil && t != types.Typ[types.Invalid] {
		_, ok := t.Underlying().(*types.Chan)
		return ok
	}
	_, ok := e.(*ast.ChanType)
	return ok
}

func (c *fileCheck) checkRange(r *ast.RangeStmt) {
	if isBlank(r.Key) && isBlank(r.Value) {
		return
	}
	if c.sorted[c.fset.Position(r.For).Line] || !c.rangesOverMap(r.X) {
		return
	}
	c.report(r.For, kindMapRange, "range over map "+types.ExprString(r.X), whyMapOrder)
}

func isBlank(e ast.Expr) bool {
	id, ok := e.(*ast.Ident)
	return e == nil || ok && id.Name == "_"
}

func (c *fileCheck) rangesOverMap(x ast.Expr) bool {
	if call, ok := x.(*ast.CallExpr); ok {
		if ref := c.resolveFunc(call.Fun); ref.path == "maps" && mapIterators[ref.name] {
			return true
		}
	}
	if t := c.info.TypeOf(x); t != nil && t != types.Typ[types.Invalid] {
		_, ok := t.Underlying().(*types.Map)
		return ok
	}
	switch x := x.(type) {
	case *ast.Ident:
		return c.maps[x.Name]
	case *ast.SelectorExpr:
		return c.maps[x.Sel.Name]
	}
	return false
}

// --- syntactic fallback: names declared with a map type ---

// mapNames returns the names that the package declares with a map type: named map types,
// and vars, fields, parameters and := variables whose type or value is a map.
func mapNames(files []*ast.File) map[string]bool {
	typeNames := map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok && isMapExpr(ts.Type, typeNames) {
				typeNames[ts.Name.Name] = true
			}
			return true
		})
	}
	names := map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			for _, id := range mapDecls(n, typeNames) {
				names[id.Name] = true
			}
			return true
		})
	}
	return names
}

// mapDecls returns the identifiers n declares with a map type or value.
func mapDecls(n ast.Node, typeNames map[string]bool) []*ast.Ident {
	switch n := n.(type) {
	case *ast.Field:
		if isMapExpr(n.Type, typeNames) {
			return n.Names
		}
	case *ast.ValueSpec:
		if isMapExpr(n.Type, typeNames) || len(n.Values) == 1 && isMapExpr(n.Values[0], typeNames) {
			return n.Names
		}
	case *ast.AssignStmt:
		var ids []*ast.Ident
		for i, lhs := range n.Lhs {
			id, ok := lhs.(*ast.Ident)
			if ok && n.Tok == token.DEFINE && i < len(n.Rhs) && isMapExpr(n.Rhs[i], typeNames) {
				ids = append(ids, id)
			}
		}
		return ids
	}
	return nil
}

// isMapExpr reports whether e is a map type, a named map type, make(map...) or a map literal.
func isMapExpr(e ast.Expr, typeNames map[string]bool) bool {
	switch e := e.(type) {
	case *ast.MapType:
		return true
	case *ast.Ident:
		return typeNames[e.Name]
	case *ast.CompositeLit:
		return isMapExpr(e.Type, typeNames)
	case *ast.CallExpr:
		fn, ok := e.Fun.(*ast.Ident)
		return ok && fn.Name == "make" && len(e.Args) > 0 && isMapExpr(e.Args[0], typeNames)
	}
	return false
}

// --- planted violations ---

// want is one planted violation: a "// want KIND" comment on the offending line. A trailing
// "untyped" says the syntactic fallback alone must find it too.
type want struct {
	file    string
	line    int
	kind    string
	untyped bool
}

var wantRE = regexp.MustCompile(`// want (\w+)( untyped)?\s*$`)

// plantedViolations reads the want comments of every .go file under dir.
func plantedViolations(t *testing.T, dir string) []want {
	t.Helper()
	var wants []want
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		data, err := os.ReadFile(path)
		for i, line := range strings.Split(string(data), "\n") {
			if m := wantRE.FindStringSubmatch(line); m != nil {
				wants = append(wants, want{file: path, line: i + 1, kind: m[1], untyped: m[2] != ""})
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(wants) == 0 {
		t.Fatalf("no // want comments under %s", dir)
	}
	return wants
}

func wantsUntyped(wants []want) []want {
	var out []want
	for _, w := range wants {
		if w.untyped {
			out = append(out, w)
		}
	}
	return out
}

// compareFindings checks that every want is reported and, when exact, that nothing else is.
func compareFindings(t *testing.T, got []finding, wants []want, exact bool) {
	t.Helper()
	matched := make([]bool, len(got))
	for _, w := range wants {
		i := slices.IndexFunc(got, func(f finding) bool {
			return f.pos.Filename == w.file && f.pos.Line == w.line && f.kind == w.kind
		})
		if i < 0 {
			t.Errorf("%s:%d: planted %s violation not reported", w.file, w.line, w.kind)
			continue
		}
		matched[i] = true
	}
	for i, f := range got {
		if exact && !matched[i] {
			t.Errorf("unexpected finding: %s", f)
		}
	}
}
