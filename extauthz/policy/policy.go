// Package policy loads the security team's Rego policy folder, checks and
// tests it, and evaluates its decision for extauthz. A folder holds .rego
// modules (those ending in _test.rego are tests) and a data/ directory of
// JSON documents: data/roles.json becomes data.roles, data/a/b.json becomes
// data.a.b. The decision is the value of Query.
//
// A Policy is one immutable, prepared revision of a folder: extauthz swaps
// whole revisions atomically and evaluates the prepared query per request.
package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// Query is the rule extauthz evaluates.
const Query = "data.fraise.authz.decision"

// decisionPath is Query as a package path and rule name, to check that a
// folder defines it.
var decisionPath = ast.MustParseRef(Query)

// DataDir is the folder of JSON documents loaded under data.
const DataDir = "data"

// Source is a policy folder read into memory and parsed: modules by file
// name, the data document, and a revision that names the exact contents.
type Source struct {
	Modules  map[string]*ast.Module
	Tests    map[string]*ast.Module
	Data     map[string]any
	Revision string
}

// Load reads every .rego file of fsys (tests included) and every JSON file
// under data/, parsing Rego as v1. Every problem is reported at once.
func Load(fsys fs.FS) (*Source, error) {
	src := &Source{Modules: map[string]*ast.Module{}, Tests: map[string]*ast.Module{}, Data: map[string]any{}}
	sum := sha256.New()
	var errs []error
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return fs.SkipDir
			}
			return nil
		}
		isData := strings.HasPrefix(p, DataDir+"/") && path.Ext(p) == ".json"
		isRego := path.Ext(p) == ".rego" && !strings.HasPrefix(p, DataDir+"/")
		if !isData && !isRego {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		fmt.Fprintf(sum, "%s\x00%d\x00", p, len(b))
		sum.Write(b)
		if isData {
			if err := src.addData(p, b); err != nil {
				errs = append(errs, err)
			}
			return nil
		}
		m, err := ast.ParseModuleWithOpts(p, string(b), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if strings.HasSuffix(p, "_test.rego") {
			src.Tests[p] = m
		} else {
			src.Modules[p] = m
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(src.Modules) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("policy: no .rego modules found"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	src.Revision = hex.EncodeToString(sum.Sum(nil))[:12]
	return src, nil
}

// addData places the JSON document of file p (data/a/b.json) at data.a.b.
func (s *Source) addData(p string, b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	keys := strings.Split(strings.TrimSuffix(strings.TrimPrefix(p, DataDir+"/"), ".json"), "/")
	node := s.Data
	for i, k := range keys {
		if i == len(keys)-1 {
			if _, dup := node[k]; dup {
				return fmt.Errorf("%s: data.%s is defined twice", p, strings.Join(keys, "."))
			}
			node[k] = v
			return nil
		}
		next, ok := node[k].(map[string]any)
		if !ok {
			if _, dup := node[k]; dup {
				return fmt.Errorf("%s: data.%s is both a document and a folder", p, strings.Join(keys[:i+1], "."))
			}
			next = map[string]any{}
			node[k] = next
		}
		node = next
	}
	return nil
}

// Store returns a fresh in-memory store holding the data document; each
// user gets its own so that none can see another's writes. The store keeps
// the document as AST values, so evaluation reads data.roles without
// converting it from Go values on every request.
func (s *Source) Store() storage.Store {
	return inmem.NewFromObjectWithOpts(deepCopy(s.Data).(map[string]any),
		inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(t))
		for i, e := range t {
			a[i] = deepCopy(e)
		}
		return a
	default:
		return v
	}
}

// compile compiles modules strictly: unused variables and imports,
// shadowed names and deprecated built-ins are errors, because in a security
// policy each of them usually hides a mistake.
func compile(mods map[string]*ast.Module) (*ast.Compiler, error) {
	c := ast.NewCompiler().WithStrict(true).WithDefaultRegoVersion(ast.RegoV1)
	c.Compile(mods)
	if c.Failed() {
		return nil, fmt.Errorf("policy: %w", c.Errors)
	}
	return c, nil
}

// Check compiles every module of fsys, tests included, in strict mode and
// verifies that the folder defines the decision rule. It backs
// `fraise policy check`.
func Check(fsys fs.FS) error {
	src, err := Load(fsys)
	if err != nil {
		return err
	}
	all := maps.Clone(src.Modules)
	maps.Copy(all, src.Tests)
	c, err := compile(all)
	if err != nil {
		return err
	}
	if len(c.GetRulesExact(decisionPath)) == 0 {
		return fmt.Errorf("policy: no rule defines %s", Query)
	}
	return nil
}

// Decision is a policy's answer for one request.
type Decision struct {
	Allow  bool
	Reason string
	// Status is the HTTP status of a denial: 0 when the policy named none,
	// otherwise a 4xx status.
	Status int
	// Headers are extra request headers to send upstream on allow.
	Headers map[string]string
}

// Policy is a compiled, prepared policy revision. It is immutable and safe
// for concurrent use.
type Policy struct {
	query     rego.PreparedEvalQuery
	revision  string
	cacheable bool
	notCached string
}

// Cacheable reports whether the policy's decision depends only on the
// principal, the operation and the request's method, path and host, and
// deterministically so: then a decision may be reused for an identical
// request. Otherwise the reason says which part of the policy prevents it.
func (p *Policy) Cacheable() (bool, string) { return p.cacheable, p.notCached }

// Prepare compiles src's modules (not its tests) strictly and prepares the
// decision query for evaluation.
func Prepare(ctx context.Context, src *Source) (*Policy, error) {
	c, err := compile(src.Modules)
	if err != nil {
		return nil, err
	}
	if len(c.GetRulesExact(decisionPath)) == 0 {
		return nil, fmt.Errorf("policy: no rule defines %s", Query)
	}
	pq, err := rego.New(
		rego.Query(Query),
		rego.Compiler(c),
		rego.Store(src.Store()),
		rego.Strict(true),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: prepare: %w", err)
	}
	ok, why := cacheability(src.Modules)
	return &Policy{query: pq, revision: src.Revision, cacheable: ok, notCached: why}, nil
}

// Revision names the policy's contents: the first 12 hex digits of a
// SHA-256 over its files. Decision logs carry it.
func (p *Policy) Revision() string { return p.revision }

// Eval evaluates the decision for input, which must be an ast.Value or a
// value of JSON-like Go types (maps, slices, strings, numbers, booleans).
// An undefined decision, or one not shaped as documented, is an error:
// extauthz fails closed on it.
func (p *Policy) Eval(ctx context.Context, input any) (Decision, error) {
	// rego.EvalInput would round-trip input through JSON on every call;
	// converting JSON-like Go values straight to AST is several times
	// cheaper and gives the same document.
	v, ok := input.(ast.Value)
	if !ok {
		var err error
		if v, err = ast.InterfaceToValue(input); err != nil {
			return Decision{}, fmt.Errorf("policy %s: input: %w", p.revision, err)
		}
	}
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(v))
	if err != nil {
		return Decision{}, fmt.Errorf("policy %s: eval: %w", p.revision, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, fmt.Errorf("policy %s: %s is undefined", p.revision, Query)
	}
	d, err := decode(rs[0].Expressions[0].Value)
	if err != nil {
		return Decision{}, fmt.Errorf("policy %s: %w", p.revision, err)
	}
	return d, nil
}

// decode reads the decision object strictly: a misspelt key or a wrong type
// is a policy bug, and guessing would risk allowing what was meant to be
// denied.
func decode(v any) (Decision, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return Decision{}, fmt.Errorf("decision: want an object, got %T", v)
	}
	var d Decision
	for k, val := range obj {
		switch k {
		case "allow":
			b, ok := val.(bool)
			if !ok {
				return Decision{}, fmt.Errorf("decision.allow: want a boolean, got %T", val)
			}
			d.Allow = b
		case "reason":
			s, ok := val.(string)
			if !ok {
				return Decision{}, fmt.Errorf("decision.reason: want a string, got %T", val)
			}
			d.Reason = s
		case "status":
			n, ok := val.(json.Number)
			if !ok {
				return Decision{}, fmt.Errorf("decision.status: want a number, got %T", val)
			}
			i, err := n.Int64()
			if err != nil || i < 400 || i > 499 {
				return Decision{}, fmt.Errorf("decision.status: want a 4xx status, got %v", n)
			}
			d.Status = int(i)
		case "headers":
			m, ok := val.(map[string]any)
			if !ok {
				return Decision{}, fmt.Errorf("decision.headers: want an object, got %T", val)
			}
			d.Headers = make(map[string]string, len(m))
			for _, hk := range slices.Sorted(maps.Keys(m)) {
				s, ok := m[hk].(string)
				if !ok {
					return Decision{}, fmt.Errorf("decision.headers[%q]: want a string, got %T", hk, m[hk])
				}
				d.Headers[hk] = s
			}
		default:
			return Decision{}, fmt.Errorf("decision: unknown key %q", k)
		}
	}
	if _, ok := obj["allow"]; !ok {
		return Decision{}, errors.New("decision: missing allow")
	}
	return d, nil
}
