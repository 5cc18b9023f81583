package observe_test

import (
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
)

// FuzzCompileCondition: any text compiles or fails with INVALID, and a
// compiled condition evaluates without panicking.
func FuzzCompileCondition(f *testing.F) {
	for _, s := range []string{`op == "INSERT"`, `after.total > 1000`, `"x" in changed`, `[1,2].all(x, x > 0)`, `after.a.b.c`} {
		f.Add(s)
	}
	c := observe.NewCompiler()
	vars, _ := observe.EventVars(event("UPDATE", `{"total":1}`, `{"total":2,"a":{"b":{"c":true}}}`))
	f.Fuzz(func(t *testing.T, src string) {
		cond, err := c.Compile(src)
		if err != nil {
			if core.ErrorCode(err) != core.CodeInvalid {
				t.Fatalf("got %v, want INVALID", err)
			}
			return
		}
		_, _ = cond.Match(vars)
	})
}

// FuzzTemplate: any template parses or fails with INVALID; rendering never
// lets a line break into a header nor an unescaped < into Slack text.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"{{after.name}}", "x {{ op }} y", "{{", "}}{{rule}}", "{{after.a.b}}"} {
		f.Add(s, "v<\r\n>&")
	}
	f.Fuzz(func(t *testing.T, src, value string) {
		tpl, err := observe.ParseTemplate(src)
		if err != nil {
			if core.ErrorCode(err) != core.CodeInvalid {
				t.Fatalf("got %v, want INVALID", err)
			}
			return
		}
		b, _ := jsonString(value)
		job := core.Job{Event: event("INSERT", "", `{"name":`+b+`,"a":{"b":`+b+`}}`)}
		vars, err := observe.EventVars(job.Event)
		if err != nil {
			return
		}
		h := tpl.Render(job, vars, observe.EscapeHeader)
		for _, r := range h {
			if r == '\r' || r == '\n' {
				t.Fatalf("header rendering %q contains a line break", h)
			}
		}
		if len(tpl.Render(job, vars, observe.EscapeText)) > observe.MaxRenderedLength {
			t.Fatal("rendered past the bound")
		}
	})
}
