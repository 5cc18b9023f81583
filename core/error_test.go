package core_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
)

func TestErrorCodeAndMessage(t *testing.T) {
	cause := errors.New("pq: relation v_secret does not exist")
	tests := []struct {
		name     string
		err      error
		wantCode core.Code
		wantMsg  string
	}{
		{"nil", nil, "", ""},
		{"plain errors are internal and say nothing", cause, core.CodeInternal, "internal error"},
		{"internal error hides its cause", core.E("db.query", core.CodeInternal, cause), core.CodeInternal, "internal error"},
		{"coded error with message", core.Errorf(core.CodeInvalid, "bad tenant"), core.CodeInvalid, "bad tenant"},
		{"coded error without message gets the default", core.E("op", core.CodeTimeout, cause), core.CodeTimeout, "timed out"},
		{"wrapped with %w keeps its code", fmt.Errorf("outer: %w", core.Errorf(core.CodeForbidden, "no")), core.CodeForbidden, "no"},
		{"outer message wins", &core.Error{Code: core.CodeNotFound, Message: "no such user", Err: core.Errorf(core.CodeInvalid, "inner")}, core.CodeNotFound, "no such user"},
		{"an error without code takes its cause's", &core.Error{Op: "x", Err: core.Errorf(core.CodeConflict, "dup")}, core.CodeConflict, "dup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := core.ErrorCode(tt.err); got != tt.wantCode {
				t.Errorf("got code %q, want %q", got, tt.wantCode)
			}
			if got := core.ErrorMessage(tt.err); got != tt.wantMsg {
				t.Errorf("got message %q, want %q", got, tt.wantMsg)
			}
		})
	}
}

func TestErrorUnwrap(t *testing.T) {
	cause := errors.New("cause")
	if err := core.E("op", core.CodeInternal, cause); !errors.Is(err, cause) {
		t.Fatal("errors.Is does not see the cause")
	}
}

// TestRetryAfterReadsTheChain checks that the hint is found however deep
// the refusal is wrapped, and that an error without one says so.
func TestRetryAfterReadsTheChain(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{"none", errors.New("x"), 0, false},
		{"direct", delayErr(3 * time.Second), 3 * time.Second, true},
		{"wrapped", core.E("op", core.CodeRateLimited, fmt.Errorf("w: %w", delayErr(time.Second))), time.Second, true},
		{"nil", nil, 0, false},
	}
	for _, tt := range tests {
		got, ok := core.RetryAfter(tt.err)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: RetryAfter = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}

type delayErr time.Duration

func (d delayErr) Error() string             { return "refused" }
func (d delayErr) RetryDelay() time.Duration { return time.Duration(d) }

// TestErrorBuilders checks that each way of building an Error sets exactly
// the fields it names, and that WithOp and Wrap leave their receiver alone,
// so a package-level *Error can serve as a template.
func TestErrorBuilders(t *testing.T) {
	cause := errors.New("cause")
	tmpl := core.Errorf(core.CodeTooLarge, "at most %d rows", 3)
	tests := []struct {
		name string
		got  *core.Error
		want core.Error
	}{
		{"Errorf", core.Errorf(core.CodeInvalid, "bad %s", "tenant"), core.Error{Code: core.CodeInvalid, Message: "bad tenant"}},
		{"Errorf with an empty format leaves the default message", core.Errorf(core.CodeForbidden, ""), core.Error{Code: core.CodeForbidden}},
		{"E", core.E("op", core.CodeInternal, cause), core.Error{Op: "op", Code: core.CodeInternal, Err: cause}},
		{"WithOp", core.Errorf(core.CodeNotFound, "no such key").WithOp("op"), core.Error{Op: "op", Code: core.CodeNotFound, Message: "no such key"}},
		{"Wrap", core.Errorf(core.CodeForbidden, "no").Wrap(cause), core.Error{Code: core.CodeForbidden, Message: "no", Err: cause}},
		{"WithOp and Wrap", core.Errorf(core.CodeTimeout, "slow").WithOp("op").Wrap(cause), core.Error{Op: "op", Code: core.CodeTimeout, Message: "slow", Err: cause}},
		{"a template is copied", tmpl.WithOp("op").Wrap(cause), core.Error{Op: "op", Code: core.CodeTooLarge, Message: "at most 3 rows", Err: cause}},
		{"and left as it was", tmpl, core.Error{Code: core.CodeTooLarge, Message: "at most 3 rows"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if *tt.got != tt.want {
				t.Errorf("got %#v, want %#v", *tt.got, tt.want)
			}
		})
	}
}

// TestNoErrorLiterals fails when a non-test file outside package core
// builds a core.Error as a composite literal: Errorf, E, WithOp and Wrap
// are the one way to build one, so that a field added to Error, or a rule
// about them, has one place to go. Tests may still spell out an expected
// value as a literal.
func TestNoErrorLiterals(t *testing.T) {
	const corePath = "github.com/fraise-dev/fraise/core"
	fset := token.NewFileSet()
	var files int
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != ".." && (name == "testdata" || name == "node_modules" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		// Package core's own files (core/*.go) define the constructors.
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || filepath.Dir(path) == filepath.Join("..", "core") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution|parser.ImportsOnly)
		if err != nil {
			return err
		}
		name := ""
		for _, im := range f.Imports {
			if p, _ := strconv.Unquote(im.Path.Value); p == corePath {
				name = "core"
				if im.Name != nil {
					name = im.Name.Name
				}
			}
		}
		if name == "" {
			return nil
		}
		files++
		if f, err = parser.ParseFile(fset, path, nil, parser.SkipObjectResolution); err != nil {
			return err
		}
		for _, v := range errorLiterals(f, name) {
			t.Errorf("%s: a core.Error literal: build it with core.Errorf or core.E", fset.Position(v))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A walk that finds nothing would pass for the wrong reason.
	if files < 20 {
		t.Fatalf("got %d files importing core, want at least 20: is the walk rooted at the module?", files)
	}
}

// TestErrorLiteralsFound checks errorLiterals against samples, so that the
// rule cannot pass by no longer seeing a literal.
func TestErrorLiteralsFound(t *testing.T) {
	tests := []struct {
		name, src string
		want      int
	}{
		{"pointer literal", `var e = &core.Error{Code: core.CodeInvalid}`, 1},
		{"value literal", `var e = core.Error{Op: "x"}`, 1},
		{"empty literal", `var e = &core.Error{}`, 1},
		{"in a slice", `var e = []*core.Error{{Code: "x"}}`, 1},
		{"renamed import", `var e = &c.Error{Op: "x"}`, 0},
		{"constructor", `var e = core.Errorf(core.CodeInvalid, "x").WithOp("op")`, 0},
		{"another package's Error", `var e = &other.Error{}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := parser.ParseFile(token.NewFileSet(), "x.go", "package x\n"+tt.src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(errorLiterals(f, "core")); got != tt.want {
				t.Errorf("got %d literals, want %d", got, tt.want)
			}
		})
	}
}

// errorLiterals returns where f, which imports package core as name,
// writes a composite literal of core.Error, including the elided type of
// an element of a []*core.Error or []core.Error literal.
func errorLiterals(f *ast.File, name string) []token.Pos {
	isError := func(e ast.Expr) bool {
		if s, ok := e.(*ast.StarExpr); ok {
			e = s.X
		}
		sel, ok := e.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Error" {
			return false
		}
		id, ok := sel.X.(*ast.Ident)
		return ok && id.Name == name
	}
	var out []token.Pos
	ast.Inspect(f, func(n ast.Node) bool {
		cl, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		if cl.Type != nil && isError(cl.Type) {
			out = append(out, cl.Pos())
		}
		// Elements whose type is elided: []*core.Error{{...}}.
		if at, ok := cl.Type.(*ast.ArrayType); ok && isError(at.Elt) {
			for _, el := range cl.Elts {
				if c, ok := el.(*ast.CompositeLit); ok && c.Type == nil {
					out = append(out, c.Pos())
				}
			}
		}
		return true
	})
	return out
}
