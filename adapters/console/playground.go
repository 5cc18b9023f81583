package console

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/policy"
)

// The playground's limits: a draft is a policy folder sent in one request,
// and a replay evaluates two policies per decision.
const (
	maxDraftFiles   = 64
	maxReplay       = 1000
	defaultReplay   = 100
	screensQuery    = "data.fraise.authz.console_screens"
	playgroundOp    = "console.playground"
	defaultTenantID = "00000000-0000-4000-8000-000000000000"
)

// playground evaluates draft policies beside the live one. The live
// folder is read on each use, so a policy extauthz reloaded is the one
// compared against; it is never written.
type playground struct {
	live fs.FS
}

func newPlayground(live fs.FS) (*playground, error) {
	if _, err := policy.Load(live); err != nil {
		return nil, fmt.Errorf("console: live policy: %w", err)
	}
	return &playground{live: live}, nil
}

// file is one file of a policy folder, as the APIs carry it.
type file struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

// liveFiles returns the live folder's Rego files (tests included), by
// path, and its data document.
func (p *playground) liveFiles() ([]file, map[string]any, error) {
	src, err := policy.Load(p.live)
	if err != nil {
		return nil, nil, err
	}
	var files []file
	err = fs.WalkDir(p.live, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || path.Ext(name) != ".rego" || strings.HasPrefix(name, policy.DataDir+"/") {
			return nil
		}
		b, err := fs.ReadFile(p.live, name)
		if err != nil {
			return err
		}
		files = append(files, file{Path: name, Content: string(b)})
		return nil
	})
	return files, src.Data, err
}

// draftFS is the folder a draft makes: the draft's files over the live
// folder's data (a draft may replace a data file by sending it). The
// draft's Rego files replace the live ones entirely, so deleting a file
// from the draft deletes it from the folder.
func (p *playground) draftFS(files []file) (fs.FS, error) {
	if len(files) == 0 {
		return nil, invalid(playgroundOp, "a draft needs at least one .rego file")
	}
	if len(files) > maxDraftFiles {
		return nil, invalid(playgroundOp, fmt.Sprintf("a draft has at most %d files", maxDraftFiles))
	}
	out := fstest.MapFS{}
	err := fs.WalkDir(p.live, policy.DataDir, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() || path.Ext(name) != ".json" {
			return nil
		}
		b, err := fs.ReadFile(p.live, name)
		if err != nil {
			return err
		}
		out[name] = &fstest.MapFile{Data: b}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		isRego := path.Ext(f.Path) == ".rego" && !strings.HasPrefix(f.Path, policy.DataDir+"/")
		isData := path.Ext(f.Path) == ".json" && strings.HasPrefix(f.Path, policy.DataDir+"/")
		if !fs.ValidPath(f.Path) || (!isRego && !isData) || strings.Contains(f.Path, "testdata") {
			return nil, invalid(playgroundOp, fmt.Sprintf("%q: a draft holds .rego files and data/*.json files, by relative path", f.Path))
		}
		out[f.Path] = &fstest.MapFile{Data: []byte(f.Content)}
	}
	return out, nil
}

// problem is one compile error at its place.
type problem struct {
	Path    string `json:"path"`
	Row     int    `json:"row"`
	Col     int    `json:"col"`
	Message string `json:"message"`
}

// problemsOf lists the OPA errors in err with their locations; an error
// that holds none is one problem without a place.
func problemsOf(err error) []problem {
	var out []problem
	var walk func(error)
	walk = func(e error) {
		switch t := e.(type) {
		case nil:
			return
		case ast.Errors:
			for _, x := range t {
				walk(x)
			}
			return
		case *ast.Error:
			p := problem{Message: t.Message}
			if t.Location != nil {
				p.Path, p.Row, p.Col = t.Location.File, t.Location.Row, t.Location.Col
			}
			out = append(out, p)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	if len(out) == 0 && err != nil {
		out = append(out, problem{Message: err.Error()})
	}
	return out
}

// sandboxDenied are the built-ins a draft may not call: a draft is code a
// console user wrote, run inside the core, so nothing that reaches the
// network from the core's position (http.send, DNS) or reads the
// process's environment (opa.runtime, where secrets' references live).
var sandboxDenied = map[string]bool{
	"http.send": true, "net.lookup_ip_addr": true, "opa.runtime": true,
}

// sandbox is the capabilities drafts compile with: this OPA's, less
// sandboxDenied, and no network for schemas.
var sandbox = func() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool { return sandboxDenied[b.Name] })
	c.AllowNet = []string{}
	return c
}()

// sandboxed refuses a draft that calls a built-in the sandbox denies, its
// tests included, before any of it runs: compiling with the sandbox's
// capabilities names each such call with its place.
func sandboxed(fsys fs.FS) error {
	src, err := policy.Load(fsys)
	if err != nil {
		return core.Errorf(core.CodeInvalid, "the policy does not load: %s", firstProblem(err)).WithOp(playgroundOp).Wrap(err)
	}
	all := maps.Clone(src.Modules)
	maps.Copy(all, src.Tests)
	// Print statements kept: the tests run them, and a call inside one is a call.
	c := ast.NewCompiler().WithCapabilities(sandbox).WithDefaultRegoVersion(ast.RegoV1).WithEnablePrintStatements(true)
	c.Compile(all)
	for _, e := range c.Errors {
		for name := range sandboxDenied {
			if strings.Contains(e.Message, name) {
				return core.Errorf(core.CodeInvalid, "the playground does not run %s: %s", name, firstProblem(ast.Errors{e})).WithOp(playgroundOp).Wrap(c.Errors)
			}
		}
	}
	return nil
}

// evalTimeout bounds one evaluation of a draft or the live policy; a
// replay's many evaluations share replayTimeout.
const (
	evalTimeout   = 5 * time.Second
	replayTimeout = 30 * time.Second
)

// compiled is a policy folder compiled for evaluation with tracing.
type compiled struct {
	src *policy.Source
	c   *ast.Compiler
}

// compileFS loads and compiles fsys's modules (not its tests) strictly, as
// extauthz does; a folder that does not compile is a CodeInvalid error
// listing its problems.
func compileFS(fsys fs.FS) (*compiled, error) {
	src, err := policy.Load(fsys)
	if err != nil {
		return nil, core.Errorf(core.CodeInvalid, "the policy does not load: %s", firstProblem(err)).WithOp(playgroundOp).Wrap(err)
	}
	c := ast.NewCompiler().WithStrict(true).WithDefaultRegoVersion(ast.RegoV1)
	c.Compile(src.Modules)
	if c.Failed() {
		return nil, core.Errorf(core.CodeInvalid, "the policy does not compile: %s", firstProblem(c.Errors)).WithOp(playgroundOp).Wrap(c.Errors)
	}
	return &compiled{src: src, c: c}, nil
}

func firstProblem(err error) string {
	p := problemsOf(err)[0]
	if p.Path == "" {
		return p.Message
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.Path, p.Row, p.Col, p.Message)
}

// outcome is one policy's decision on an input, explained.
type outcome struct {
	Allow  bool   `json:"allow"`
	Reason string `json:"reason"`
	Status int    `json:"status,omitempty"`
	// Rule is the file and line of the decision rule that answered.
	Rule string `json:"rule,omitempty"`
	// Notes are OPA's explain notes: the trace() messages of the rules
	// that ran.
	Notes []string `json:"notes"`
	// Error is set when the policy could not decide (extauthz then fails
	// closed).
	Error string `json:"error,omitempty"`
}

// eval evaluates c's decision on input. With explain it traces the
// evaluation for the notes and the deciding rule.
func (c *compiled) eval(ctx context.Context, input any, explain bool) outcome {
	opts := []func(*rego.Rego){
		rego.Query(policy.Query), rego.Compiler(c.c), rego.Input(input),
		rego.Store(c.src.Store()),
		rego.StrictBuiltinErrors(true),
	}
	var buf *topdown.BufferTracer
	if explain {
		buf = topdown.NewBufferTracer()
		opts = append(opts, rego.QueryTracer(buf))
	}
	ctx, cancel := context.WithTimeout(ctx, evalTimeout)
	defer cancel()
	rs, err := rego.New(opts...).Eval(ctx)
	o := outcome{Notes: []string{}}
	if err != nil {
		o.Error = err.Error()
		o.Reason = "the policy could not decide: " + err.Error()
		return o
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		o.Error = policy.Query + " is undefined"
		o.Reason = o.Error
		return o
	}
	d, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		o.Error = "the decision is not an object"
		o.Reason = o.Error
		return o
	}
	o.Allow, _ = d["allow"].(bool)
	o.Reason, _ = d["reason"].(string)
	if st, ok := d["status"].(interface{ String() string }); ok {
		_, _ = fmt.Sscan(st.String(), &o.Status)
	}
	if buf != nil {
		for _, e := range *buf {
			switch {
			case e.Op == topdown.NoteOp:
				o.Notes = append(o.Notes, e.Message)
			case e.Op == topdown.ExitOp && e.HasRule():
				r := e.Node.(*ast.Rule)
				if r.Head.Name == "decision" || r.Head.Ref().String() == "decision" {
					if loc := r.Location; loc != nil {
						o.Rule = fmt.Sprintf("%s:%d", loc.File, loc.Row)
					}
				}
			}
		}
	}
	return o
}

// sandboxedDraft is the draft of files, refused unless it keeps to what
// a draft may do (sandboxed).
func (p *playground) sandboxedDraft(files []file) (fs.FS, error) {
	fsys, err := p.draftFS(files)
	if err != nil {
		return nil, err
	}
	if err := sandboxed(fsys); err != nil {
		return nil, err
	}
	return fsys, nil
}

// compileDraftAndLive compiles the sandboxed draft of files and the live
// policy, which every comparison of the two starts from.
func (p *playground) compileDraftAndLive(op string, files []file) (draft, live *compiled, err error) {
	fsys, err := p.sandboxedDraft(files)
	if err != nil {
		return nil, nil, err
	}
	if draft, err = compileFS(fsys); err != nil {
		return nil, nil, err
	}
	if live, err = compileFS(p.live); err != nil {
		return nil, nil, core.E(op, core.CodeInternal, err)
	}
	return draft, live, nil
}

// screens evaluates the live policy's console_screens for p.
func (p *playground) screens(ctx context.Context, pr core.Principal) ([]string, error) {
	c, err := compileFS(p.live)
	if err != nil {
		return nil, core.E("console.me", core.CodeInternal, err)
	}
	roles := pr.Roles
	if roles == nil {
		roles = []string{}
	}
	rs, err := rego.New(rego.Query(screensQuery), rego.Compiler(c.c),
		rego.Store(c.src.Store()),
		rego.Input(map[string]any{"principal": map[string]any{"subject": pr.Subject, "tenant": pr.Tenant, "roles": roles}}),
	).Eval(ctx)
	if err != nil {
		return nil, core.E("console.me", core.CodeInternal, err)
	}
	out := []string{}
	if len(rs) == 1 && len(rs[0].Expressions) == 1 {
		if l, ok := rs[0].Expressions[0].Value.([]any); ok {
			for _, s := range l {
				if str, ok := s.(string); ok {
					out = append(out, str)
				}
			}
		}
	}
	return out, nil
}

// testResult is one Rego test's outcome.
type testResult struct {
	Name    string `json:"name"`
	Pass    bool   `json:"pass"`
	Message string `json:"message,omitempty"`
}

// test runs the draft folder's Rego tests.
func test(ctx context.Context, fsys fs.FS) (map[string]any, error) {
	src, err := policy.Load(fsys)
	if err != nil {
		return nil, core.Errorf(core.CodeInvalid, "the policy does not load: %s", firstProblem(err)).WithOp(playgroundOp).Wrap(err)
	}
	rep, err := src.Test(ctx)
	results := []testResult{}
	for _, r := range rep.Results {
		msg := r.Err
		if msg == "" && !r.Pass {
			msg = strings.TrimSpace(r.Output)
		}
		if msg == "" && !r.Pass {
			msg = fmt.Sprintf("%s:%d: failed", r.File, r.Row)
		}
		results = append(results, testResult{Name: strings.TrimPrefix(r.Package, "data.") + "." + r.Name, Pass: r.Pass || r.Skip, Message: msg})
	}
	if err != nil && len(rep.Results) == 0 {
		// Nothing ran: the tests do not compile, or there are none.
		return map[string]any{"passed": 0, "failed": 1, "results": []testResult{{Name: "compile", Message: firstProblem(err)}}}, nil
	}
	return map[string]any{"passed": rep.Passed, "failed": rep.Failed, "results": results}, nil
}

// unifiedDiff is a unified diff (3 lines of context) of the live files
// to the draft's, file by file in path order, in the form `git apply` and
// `patch -p1` read, with a/ and b/ prefixes.
func unifiedDiff(live, draft []file) string {
	old := map[string]string{}
	for _, f := range live {
		old[f.Path] = f.Content
	}
	nu := map[string]string{}
	for _, f := range draft {
		nu[f.Path] = f.Content
	}
	paths := slices.Sorted(maps.Keys(old))
	for p := range nu {
		if _, ok := old[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var b strings.Builder
	for _, p := range paths {
		o, inOld := old[p]
		n, inNew := nu[p]
		if inOld && inNew && o == n {
			continue
		}
		from, to := "a/"+p, "b/"+p
		if !inOld {
			from = "/dev/null"
		}
		if !inNew {
			to = "/dev/null"
		}
		fmt.Fprintf(&b, "--- %s\n+++ %s\n", from, to)
		writeHunks(&b, splitLines(o), splitLines(n))
	}
	return b.String()
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	ls := strings.SplitAfter(s, "\n")
	if ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1] // the text ended with a newline
	}
	return ls
}

// edit is one line of a diff: ' ', '-' or '+'.
type edit struct {
	op   byte
	line string
}

// diffLines is the shortest edit script from a to b by longest common
// subsequence; policy files are small enough for its quadratic table.
func diffLines(a, b []string) []edit {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []edit
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			out = append(out, edit{' ', a[i]})
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, edit{'+', b[j]})
			j++
		default:
			out = append(out, edit{'-', a[i]})
			i++
		}
	}
	return out
}

// writeHunks writes the hunks of the edits from a to b with 3 lines of
// context.
func writeHunks(b *strings.Builder, a, c []string) {
	const ctx = 3
	es := diffLines(a, c)
	for start := 0; start < len(es); {
		// Find the next change.
		k := start
		for k < len(es) && es[k].op == ' ' {
			k++
		}
		if k == len(es) {
			return
		}
		lo := max(k-ctx, start)
		// Extend the hunk while changes are within 2*ctx lines.
		hi := k
		for {
			for hi < len(es) && es[hi].op != ' ' {
				hi++
			}
			run := hi
			for run < len(es) && es[run].op == ' ' && run-hi < 2*ctx+1 {
				run++
			}
			if run < len(es) && es[run].op != ' ' {
				hi = run
				continue
			}
			hi = min(hi+ctx, len(es))
			break
		}
		// Line numbers of the hunk's first line in each file.
		oldLine, newLine := 1, 1
		for _, e := range es[:lo] {
			if e.op != '+' {
				oldLine++
			}
			if e.op != '-' {
				newLine++
			}
		}
		var oldN, newN int
		for _, e := range es[lo:hi] {
			if e.op != '+' {
				oldN++
			}
			if e.op != '-' {
				newN++
			}
		}
		if oldN == 0 {
			oldLine--
		}
		if newN == 0 {
			newLine--
		}
		fmt.Fprintf(b, "@@ -%d,%d +%d,%d @@\n", oldLine, oldN, newLine, newN)
		for _, e := range es[lo:hi] {
			b.WriteByte(e.op)
			b.WriteString(e.line)
			if !strings.HasSuffix(e.line, "\n") {
				b.WriteString("\n\\ No newline at end of file\n")
			}
		}
		start = hi
	}
}

// readFile reads name of the live folder, "" and an error when absent.
func readFile(p *playground, name string) (string, error) {
	b, err := fs.ReadFile(p.live, name)
	return string(b), err
}
