// Package layering pins payhsm's package layering: which packages may import
// which. It asks `go list -deps -json` for the module's import graph and checks
// it against the rules table below, in the manner of cockroachdb/pebble's lint
// tests. A new import that crosses a layer fails `make test` with the import
// chain that crosses it.
//
// The layers, from the leaves up:
//
//	fault                      typed errors; imports nothing of payhsm
//	keyspec                    key vocabulary and rules; imports only fault
//	hsm/*                      algorithms and the key custody (PKCS#11);
//	                           nothing of payhsm outside hsm/ but keyspec, fault
//	keystore                   key records on a key-value engine; no ops, no protocol
//	keystore/kv/*              the engines (Pebble, etcd): below the store, they
//	                           hold bytes; nothing of payhsm but fault
//	access                     principals and policies; no ops, no protocol
//	audit                      the audit trail; of payhsm only hsm/secret
//	ops                        the operations layer; knows no transport
//	protocol/*                 wire decode/encode over ops; does no crypto itself
//	metrics, health            Prometheus metrics, readiness; leaves only the daemon imports
//	daemon, ceremony, tools/*  the commands' implementations; only cmd/ imports them
//	cmd/*, test/*              imported by nothing
package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// module is the module path; patterns in the rules are relative to it.
const module = "payhsm"

// rule is one layering rule: no package matched by From (and not by
// FromExcept) may import a package matched by Deny unless Allow also matches
// it. Patterns are import paths relative to the module: "ops" is the package
// payhsm/ops, "ops/..." is ops and everything below it, "..." is every payhsm
// package. Two more patterns name what is outside the module: "std" (the
// standard library) and "ext" (any other module).
type rule struct {
	Name       string
	From       []string
	FromExcept []string
	Deny       []string
	Allow      []string
	// Direct checks only the packages' own imports; otherwise the whole
	// transitive closure of their (non-test) imports is checked.
	Direct bool
	// Tests also checks the imports of the packages' _test.go files (direct
	// imports only: test imports are not transitive).
	Tests bool
	// Pending lists violations known today, as "from -> to" with import
	// paths relative to the module, that other work is removing (issue #13).
	// They are logged, not failed; a pending entry that no longer occurs
	// fails the test, so that its mark is removed once the fix lands.
	Pending []string
}

var rules = []rule{
	{
		Name: "fault imports nothing of payhsm",
		From: []string{"fault/..."},
		Deny: []string{"..."},
		// fault/... itself is below fault: allow the package's own subtree.
		Allow: []string{"fault/..."},
	},
	{
		Name:  "keyspec is a leaf: only fault and the standard library",
		From:  []string{"keyspec/..."},
		Deny:  []string{"...", "ext"},
		Allow: []string{"keyspec/...", "fault/..."},
	},
	{
		Name: "keystore and hsm do not import ops",
		From: []string{"keystore/...", "hsm/..."},
		Deny: []string{"ops/..."},
	},
	{
		Name:  "hsm packages import nothing of payhsm outside hsm/ but keyspec and fault",
		From:  []string{"hsm/..."},
		Deny:  []string{"..."},
		Allow: []string{"hsm/...", "keyspec/...", "fault/..."},
	},
	{
		Name:  "the key-value engines hold bytes: keystore/kv imports nothing of payhsm but keystore/kv and fault",
		From:  []string{"keystore/kv/..."},
		Deny:  []string{"..."},
		Allow: []string{"keystore/kv/...", "fault/..."},
	},
	{
		Name: "audit (the trail writer and verifier) sits below the edges and commands: of payhsm it imports only hsm/secret and internal/jsontext",
		From: []string{"audit/..."},
		Deny: []string{"..."},
		// hsm/secret masks PANs as everything else does; internal/jsontext
		// is the rule its encoder shares with the key store's.
		Allow: []string{"audit/...", "hsm/secret", "internal/jsontext"},
	},
	{
		Name: "keystore does not import protocol, daemon, ceremony",
		From: []string{"keystore/..."},
		Deny: []string{"protocol/...", "daemon/...", "ceremony/..."},
	},
	{
		Name: "access decides, knowing no transport: no ops, protocol, daemon, ceremony or hsm",
		From: []string{"access/..."},
		Deny: []string{"ops/...", "protocol/...", "daemon/...", "ceremony/...", "hsm/..."},
	},
	{
		Name: "ceremony does not import daemon",
		From: []string{"ceremony/..."},
		Deny: []string{"daemon/..."},
	},
	{
		Name: "daemon does not import ceremony",
		From: []string{"daemon/..."},
		// The ceremony command itself; its libraries ceremony/custodian and
		// ceremony/mainkey are shared by both.
		Deny: []string{"ceremony"},
	},
	{
		Name: "protocol decodes and encodes only: no hsm package",
		From: []string{"protocol/..."},
		Deny: []string{"hsm/..."},
		// ops, which protocol calls, does the crypto with hsm packages.
		Direct: true,
	},
	{
		Name: "ops does not import replication (the channel drives ops, not the reverse)",
		From: []string{"ops/..."},
		Deny: []string{"replication/..."},
	},
	{
		Name: "replication is below the edges and the commands",
		From: []string{"replication/..."},
		Deny: []string{"protocol/...", "daemon/...", "ceremony/...", "appliance/..."},
	},
	{
		Name: "ops knows no transport and no command",
		From: []string{"ops/..."},
		Deny: []string{"protocol/...", "daemon/...", "ceremony/...", "cmd/...", "tools/..."},
	},
	{
		Name: "nothing imports cmd or test packages",
		From: []string{"..."},
		Deny: []string{"cmd/...", "test/..."},
		// cmd/payhsm's own tests may import cmd/payhsm: imports of a
		// package's own path are never violations (see check).
		Direct: true,
		Tests:  true,
	},
	{
		Name:       "only cmd imports daemon and ceremony",
		From:       []string{"..."},
		FromExcept: []string{"cmd/..."},
		Deny:       []string{"daemon", "ceremony"},
		Direct:     true,
	},
	{
		Name:       "only cmd (and tools) import tools",
		From:       []string{"..."},
		FromExcept: []string{"cmd/...", "tools/..."},
		Deny:       []string{"tools/..."},
		Direct:     true,
	},
	{
		// The front ends define observer interfaces that metrics implements,
		// and the daemon wires them: metrics and health stay leaves, and no
		// component depends on how it is observed.
		Name:  "metrics and health import nothing of payhsm",
		From:  []string{"metrics/...", "health/..."},
		Deny:  []string{"..."},
		Allow: []string{"metrics/...", "health/..."},
	},
	{
		Name:       "only the daemon imports metrics and health",
		From:       []string{"..."},
		FromExcept: []string{"daemon/...", "cmd/...", "metrics/...", "health/..."},
		Deny:       []string{"metrics/...", "health/..."},
		Direct:     true,
	},
	{
		Name: "the payhsm binary links no test code",
		From: []string{"cmd/..."},
		Deny: []string{"testing"},
	},
}

// pkg is what the test needs of `go list -json` output.
type pkg struct {
	ImportPath   string
	Standard     bool
	Module       *struct{ Path string }
	Imports      []string
	TestImports  []string
	XTestImports []string
	DepOnly      bool
	Error        *struct{ Err string }
}

var graphOnce struct {
	sync.Once
	graph map[string]*pkg
	err   error
}

// loadGraph returns every package the module reaches, keyed by import path,
// from one run of go list per test binary.
func loadGraph(t *testing.T) map[string]*pkg {
	t.Helper()
	graphOnce.Do(func() { graphOnce.graph, graphOnce.err = goList() })
	if graphOnce.err != nil {
		t.Fatal(graphOnce.err)
	}
	return graphOnce.graph
}

// goList runs go list over the module.
func goList() (map[string]*pkg, error) {
	cmd := exec.Command("go", "list", "-deps", "-json", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %v\n%s", err, stderr.Bytes())
	}
	graph := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(pkg)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decoding go list output: %v", err)
		}
		if p.Error != nil {
			return nil, fmt.Errorf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		graph[p.ImportPath] = p
	}
	if len(graph) == 0 {
		return nil, errors.New("go list found no packages")
	}
	return graph, nil
}

// inModule reports whether p is a payhsm package.
func (p *pkg) inModule() bool { return inModule(p.ImportPath) }

// inModule reports whether path names a payhsm package.
func inModule(path string) bool {
	return path == module || strings.HasPrefix(path, module+"/")
}

// rel is an import path relative to the module ("ops" for payhsm/ops); paths
// outside the module are returned unchanged.
func rel(path string) string {
	if r, ok := strings.CutPrefix(path, module+"/"); ok {
		return r
	}
	return path
}

// match reports whether the package at path matches pattern.
func match(graph map[string]*pkg, pattern, path string) bool {
	if !inModule(path) {
		switch pattern {
		case "std":
			// "C" (cgo) is not in go list's package list.
			p := graph[path]
			return path == "C" || p != nil && p.Standard
		case "ext":
			p := graph[path]
			return path != "C" && p != nil && !p.Standard
		}
		return pattern == path // a standard or external package named in full
	}
	r := rel(path)
	switch {
	case pattern == "...":
		return true
	case strings.HasSuffix(pattern, "/..."):
		prefix := strings.TrimSuffix(pattern, "/...")
		return r == prefix || strings.HasPrefix(r, prefix+"/")
	}
	return r == pattern
}

func matchAny(graph map[string]*pkg, patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(pat string) bool { return match(graph, pat, path) })
}

// chain returns the import path from 'from' to 'to' through non-test imports
// (breadth-first, so the shortest), for the failure message.
func chain(graph map[string]*pkg, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for n := to; n != ""; n = prev[n] {
				path = append(path, rel(n))
			}
			slices.Reverse(path)
			return path
		}
		if p := graph[cur]; p != nil {
			for _, imp := range p.Imports {
				if _, seen := prev[imp]; !seen {
					prev[imp] = cur
					queue = append(queue, imp)
				}
			}
		}
	}
	return []string{rel(from), "…", rel(to)}
}

// violation is one forbidden import: from (directly or through chain) to.
type violation struct {
	from, to string
	how      string
}

func (v violation) key() string { return rel(v.from) + " -> " + rel(v.to) }

// check returns the rule's violations, sorted.
func check(graph map[string]*pkg, r rule) []violation {
	var vs []violation
	for path, p := range graph {
		if !p.inModule() || p.DepOnly || !matchAny(graph, r.From, path) || matchAny(graph, r.FromExcept, path) {
			continue
		}
		seen := map[string]bool{}
		test := func(dep, how string) {
			if dep == path || seen[dep] {
				return
			}
			if matchAny(graph, r.Deny, dep) && !matchAny(graph, r.Allow, dep) {
				seen[dep] = true
				vs = append(vs, violation{from: path, to: dep, how: how})
			}
		}
		for _, dep := range p.Imports {
			test(dep, "imports it")
		}
		if !r.Direct {
			for _, dep := range transitive(graph, path) {
				if !seen[dep] {
					test(dep, strings.Join(chain(graph, path, dep), " -> "))
				}
			}
		}
		if r.Tests {
			for _, dep := range p.TestImports {
				test(dep, "its tests import it")
			}
			for _, dep := range p.XTestImports {
				test(dep, "its external tests import it")
			}
		}
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].key() < vs[j].key() })
	return vs
}

// transitive returns every package path reaches through non-test imports.
func transitive(graph map[string]*pkg, path string) []string {
	seen := map[string]bool{}
	var out []string
	var walk func(string)
	walk = func(p string) {
		n := graph[p]
		if n == nil {
			return
		}
		for _, imp := range n.Imports {
			if !seen[imp] {
				seen[imp] = true
				out = append(out, imp)
				walk(imp)
			}
		}
	}
	walk(path)
	return out
}

func TestLayering(t *testing.T) {
	graph := loadGraph(t)
	for _, r := range rules {
		t.Run(r.Name, func(t *testing.T) {
			pending := map[string]bool{}
			for _, p := range r.Pending {
				pending[p] = false
			}
			for _, v := range check(graph, r) {
				if _, ok := pending[v.key()]; ok {
					pending[v.key()] = true
					t.Logf("pending (known, being fixed): %s (%s)", v.key(), v.how)
					continue
				}
				t.Errorf("%s: forbidden import of %s (%s)", rel(v.from), rel(v.to), v.how)
			}
			for p, seen := range pending {
				if !seen {
					t.Errorf("pending violation %q no longer occurs: remove it from the rule's Pending list", p)
				}
			}
		})
	}
}

// TestRulesMatchPackages keeps the rules honest: every From, FromExcept and
// Deny pattern must name at least one package that exists, so that a rename
// cannot silently turn a rule into one that checks nothing.
func TestRulesMatchPackages(t *testing.T) {
	graph := loadGraph(t)
	for _, r := range rules {
		for _, pats := range [][]string{r.From, r.FromExcept, r.Deny} {
			for _, pat := range pats {
				if !slices.ContainsFunc(keys(graph), func(path string) bool { return match(graph, pat, path) }) {
					t.Errorf("rule %q: pattern %q matches no package", r.Name, pat)
				}
			}
		}
	}
}

func keys(graph map[string]*pkg) []string {
	out := make([]string, 0, len(graph))
	for k := range graph {
		out = append(out, k)
	}
	return out
}

// TestMatch pins the pattern language of the rules table.
func TestMatch(t *testing.T) {
	graph := map[string]*pkg{
		"payhsm/ops":         {ImportPath: "payhsm/ops"},
		"payhsm/ops/opstest": {ImportPath: "payhsm/ops/opstest"},
		"payhsm/opsx":        {ImportPath: "payhsm/opsx"},
		"fmt":                {ImportPath: "fmt", Standard: true},
		"go.uber.org/zap":    {ImportPath: "go.uber.org/zap", Module: &struct{ Path string }{"go.uber.org/zap"}},
	}
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"ops", "payhsm/ops", true},
		{"ops", "payhsm/ops/opstest", false},
		{"ops/...", "payhsm/ops", true},
		{"ops/...", "payhsm/ops/opstest", true},
		{"ops/...", "payhsm/opsx", false},
		{"...", "payhsm/opsx", true},
		{"...", "fmt", false},
		{"...", "go.uber.org/zap", false},
		{"std", "fmt", true},
		{"std", "payhsm/ops", false},
		{"ext", "go.uber.org/zap", true},
		{"ext", "fmt", false},
		{"ext", "payhsm/ops", false},
		{"fmt", "fmt", true},
		{"go.uber.org/zap", "go.uber.org/zap", true},
	} {
		if got := match(graph, tc.pattern, tc.path); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}
