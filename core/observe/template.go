package observe

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode"

	"github.com/fraise-dev/fraise/core"
)

// MaxTemplateLength bounds a template's source, MaxRenderedLength its output.
const (
	MaxTemplateLength = 16 << 10
	MaxRenderedLength = 64 << 10
)

// Escaping says how a template's values are made safe for where the text goes.
type Escaping int

// The escapings. Templates are written by tenants and filled with event data
// that may come from anyone: values are substituted, never interpreted, and
// escaped for their destination.
const (
	// EscapeText leaves values as they are (a text/plain email body).
	EscapeText Escaping = iota
	// EscapeSlack escapes &, < and > as Slack requires, so a value cannot
	// form a link, a mention (<!channel>) or a user reference.
	EscapeSlack
	// EscapeHeader removes line breaks and control characters, so a value
	// cannot add a header (an email subject).
	EscapeHeader
)

// Template is a parsed template: text with {{ path }} placeholders, where
// path is op, table, tenant, changed, or key, before or after followed by
// .column names (nested JSON objects by further .names). There are no
// conditionals, loops or function calls: a template cannot run code.
type Template struct {
	parts []part
}

type part struct {
	text string
	path []string // nil for literal text
}

var roots = map[string]bool{"op": true, "table": true, "tenant": true, "changed": true, "key": true,
	"before": true, "after": true, "rule": true, "id": true}

// ParseTemplate parses src. Errors are *core.Error with CodeInvalid.
func ParseTemplate(src string) (*Template, error) {
	const op = "observe.ParseTemplate"
	bad := func(format string, args ...any) error {
		return core.Errorf(core.CodeInvalid, "invalid template: "+format, args...).WithOp(op)
	}
	if len(src) > MaxTemplateLength {
		return nil, bad("longer than %d bytes", MaxTemplateLength)
	}
	t := &Template{}
	rest := src
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.parts = append(t.parts, part{text: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{text: rest[:i]})
		}
		rest = rest[i+2:]
		j := strings.Index(rest, "}}")
		if j < 0 {
			return nil, bad("unclosed {{")
		}
		expr := strings.TrimSpace(rest[:j])
		rest = rest[j+2:]
		path := strings.Split(expr, ".")
		if !roots[path[0]] {
			return nil, bad("unknown value %q (want op, table, tenant, id, rule, changed, key.*, before.* or after.*)", expr)
		}
		for _, p := range path {
			if p == "" || !validName(p) {
				return nil, bad("bad name in %q", expr)
			}
		}
		t.parts = append(t.parts, part{path: path})
	}
	return t, nil
}

func validName(s string) bool {
	for _, r := range s {
		if !(r == '_' || r == '$' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}

// Render fills t from the job's event with values escaped by esc. Missing
// values render as nothing. The output is at most MaxRenderedLength bytes.
func (t *Template) Render(job core.Job, vars Vars, esc Escaping) string {
	var b strings.Builder
	for _, p := range t.parts {
		s := p.text
		if p.path != nil {
			s = escape(valueText(lookup(job, vars, p.path)), esc)
		} else if esc == EscapeHeader {
			s = escape(s, esc)
		}
		if b.Len()+len(s) > MaxRenderedLength {
			s = s[:MaxRenderedLength-b.Len()]
			b.WriteString(strings.ToValidUTF8(s, ""))
			break
		}
		b.WriteString(s)
	}
	return b.String()
}

func lookup(job core.Job, vars Vars, path []string) any {
	var v any
	switch path[0] {
	case "id":
		v = job.ID
	case "rule":
		v = job.RuleName
	default:
		v = vars[path[0]]
	}
	for _, name := range path[1:] {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[name]
	}
	return v
}

func valueText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return ""
		}
		return string(b)
	}
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func escape(s string, esc Escaping) string {
	switch esc {
	case EscapeSlack:
		return slackEscaper.Replace(s)
	case EscapeHeader:
		return strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == '\t' {
				return ' '
			}
			if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
				return -1
			}
			return r
		}, s)
	}
	return s
}
