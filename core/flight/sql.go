package flight

import (
	"strconv"
	"strings"
	"unicode"

	"github.com/fraise-dev/fraise/core"
)

// unsupportedSQL begins the message for statements outside what Flight SQL
// exports accept, so the client learns what is.
const unsupportedSQL = "only SELECT of columns from one exportable dataset, with a simple WHERE, ORDER BY and LIMIT, is supported"

// writeKeywords start statements that change data or schema: refused as
// such, with a message that says so, rather than as merely unsupported.
var writeKeywords = map[string]bool{
	"insert": true, "update": true, "delete": true, "merge": true, "upsert": true, "create": true,
	"drop": true, "alter": true, "truncate": true, "grant": true, "revoke": true, "copy": true,
	"call": true, "do": true, "vacuum": true, "comment": true, "lock": true, "set": true,
	"reset": true, "begin": true, "commit": true, "rollback": true, "refresh": true, "reindex": true,
	"cluster": true, "analyze": true, "execute": true, "prepare": true, "listen": true, "notify": true,
}

// errWrite refuses statements that would write, saying why.
var errWrite = core.Errorf(core.CodeForbidden, "write statements are refused: Flight SQL exports are read-only")

// ParseSQL reads a Flight SQL statement conservatively: a SELECT of
// columns (or *) from one table (a dataset name), with an optional WHERE of
// comparisons (=, <>, !=, <, <=, >, >=, [NOT] LIKE, [NOT] ILIKE, [NOT] IN
// (...), IS [NOT] NULL) of a column with a literal or a parameter (?)
// combined with AND, OR, NOT and parentheses, an optional ORDER BY of
// columns and an optional LIMIT. Parameters are numbered from 1 in the
// order they are written; the query keeps them unbound (Query.Params)
// until Bind gives them values. Anything else is refused: writes with CodeForbidden, the rest
// with CodeInvalid. The result names its dataset; the catalog decides
// whether it may be exported.
func ParseSQL(sql string) (Query, error) {
	if len(sql) > maxCommand {
		return Query{}, core.Errorf(core.CodeTooLarge, "statement larger than %d bytes", maxCommand)
	}
	toks, err := lex(sql)
	if err != nil {
		return Query{}, err
	}
	p := &parser{toks: toks}
	if len(toks) > 0 && toks[0].kind == tokWord && writeKeywords[toks[0].low] {
		return Query{}, errWrite
	}
	q, err := p.query()
	if err != nil {
		return Query{}, err
	}
	return q, nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokWord
	tokIdent // "quoted"
	tokString
	tokNumber
	tokSym
)

type token struct {
	kind tokKind
	text string // as written (identifiers unquoted, strings unescaped)
	low  string // lower-cased word
}

func lex(s string) ([]token, error) {
	var toks []token
	bad := func(msg string) ([]token, error) {
		return nil, core.Errorf(core.CodeInvalid, "%s: %s", unsupportedSQL, msg)
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			return bad("comments are not accepted")
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			return bad("comments are not accepted")
		case c == '\'':
			text, next, ok := scanQuoted(s, i, '\'')
			if !ok {
				return bad("unterminated string")
			}
			toks = append(toks, token{kind: tokString, text: text})
			i = next
		case c == '"':
			text, next, ok := scanQuoted(s, i, '"')
			if !ok {
				return bad("unterminated quoted identifier")
			}
			toks = append(toks, token{kind: tokIdent, text: text})
			i = next
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				(s[j] == '-' || s[j] == '+') && (s[j-1] == 'e' || s[j-1] == 'E')) {
				j++
			}
			if _, err := strconv.ParseFloat(s[i:j], 64); err != nil {
				return bad("bad number " + strconv.Quote(s[i:j]))
			}
			toks = append(toks, token{kind: tokNumber, text: s[i:j]})
			i = j
		case c == '_' || c < 0x80 && unicode.IsLetter(rune(c)):
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '$' || s[j] < 0x80 && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])))) {
				j++
			}
			toks = append(toks, token{kind: tokWord, text: s[i:j], low: strings.ToLower(s[i:j])})
			i = j
		default:
			for _, sym := range []string{"<>", "!=", "<=", ">=", "=", "<", ">", "(", ")", ",", ".", "*", ";", "-", "?"} {
				if strings.HasPrefix(s[i:], sym) {
					toks = append(toks, token{kind: tokSym, text: sym})
					i += len(sym)
					goto next
				}
			}
			return bad("unexpected character " + strconv.QuoteRune(rune(c)))
		next:
		}
	}
	return append(toks, token{kind: tokEOF}), nil
}

type parser struct {
	toks   []token
	pos    int
	nodes  int
	params int // the ? read so far
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

func (p *parser) fail(msg string) error {
	return core.Errorf(core.CodeInvalid, "%s (%s)", unsupportedSQL, msg)
}

// keyword consumes the unquoted word w if it is next.
func (p *parser) keyword(w string) bool {
	if t := p.peek(); t.kind == tokWord && t.low == w {
		p.pos++
		return true
	}
	return false
}

func (p *parser) sym(s string) bool {
	if t := p.peek(); t.kind == tokSym && t.text == s {
		p.pos++
		return true
	}
	return false
}

var reserved = map[string]bool{
	"select": true, "from": true, "where": true, "order": true, "by": true, "limit": true, "and": true,
	"or": true, "not": true, "in": true, "is": true, "null": true, "like": true, "ilike": true,
	"asc": true, "desc": true, "true": true, "false": true, "join": true, "union": true, "group": true,
	"having": true, "offset": true, "with": true, "as": true, "on": true, "distinct": true,
}

// ident reads an identifier: unquoted words fold to lower case as in
// PostgreSQL, quoted ones keep their case.
func (p *parser) ident() (string, bool) {
	t := p.peek()
	switch {
	case t.kind == tokIdent && t.text != "":
		p.pos++
		return t.text, true
	case t.kind == tokWord && !reserved[t.low]:
		p.pos++
		return t.low, true
	}
	return "", false
}

func (p *parser) query() (Query, error) {
	var q Query
	if !p.keyword("select") {
		if t := p.peek(); t.kind == tokWord && t.low == "with" {
			return q, p.fail("WITH is not accepted")
		}
		return q, p.fail("not a SELECT")
	}
	if !p.sym("*") {
		for {
			col, ok := p.ident()
			if !ok {
				return q, p.fail("select list must name columns")
			}
			q.Columns = append(q.Columns, col)
			if !p.sym(",") {
				break
			}
		}
	}
	if !p.keyword("from") {
		return q, p.fail("missing FROM")
	}
	var parts []string
	for {
		part, ok := p.ident()
		if !ok {
			return q, p.fail("FROM must name one dataset")
		}
		parts = append(parts, part)
		if !p.sym(".") {
			break
		}
	}
	q.Dataset = strings.Join(parts, ".")
	if p.keyword("where") {
		e, err := p.or(0)
		if err != nil {
			return q, err
		}
		q.Where = e
	}
	if p.keyword("order") {
		if !p.keyword("by") {
			return q, p.fail("ORDER without BY")
		}
		for {
			col, ok := p.ident()
			if !ok {
				return q, p.fail("ORDER BY must name columns")
			}
			o := Order{Column: col}
			if p.keyword("desc") {
				o.Desc = true
			} else {
				p.keyword("asc")
			}
			q.Order = append(q.Order, o)
			if !p.sym(",") {
				break
			}
		}
	}
	if p.keyword("limit") {
		t := p.next()
		n, err := strconv.ParseInt(t.text, 10, 64)
		if t.kind != tokNumber || err != nil || n < 0 {
			return q, p.fail("LIMIT takes a non-negative integer")
		}
		q.Limit = &n
	}
	q.Params = p.params
	p.sym(";")
	if t := p.peek(); t.kind != tokEOF {
		if t.kind == tokWord && writeKeywords[t.low] {
			return q, errWrite
		}
		return q, p.fail("unexpected " + strconv.Quote(t.text))
	}
	return q, nil
}

func (p *parser) count(depth int) error {
	p.nodes++
	if depth > maxDepth || p.nodes > maxNodes {
		return p.fail("WHERE too complex")
	}
	return nil
}

func (p *parser) or(depth int) (*Expr, error) {
	if err := p.count(depth); err != nil {
		return nil, err
	}
	var terms []*Expr
	for {
		e, err := p.and(depth + 1)
		if err != nil {
			return nil, err
		}
		terms = append(terms, e)
		if !p.keyword("or") {
			break
		}
	}
	if len(terms) == 1 {
		return terms[0], nil
	}
	return &Expr{Or: terms}, nil
}

func (p *parser) and(depth int) (*Expr, error) {
	var terms []*Expr
	for {
		e, err := p.not(depth + 1)
		if err != nil {
			return nil, err
		}
		terms = append(terms, e)
		if !p.keyword("and") {
			break
		}
	}
	if len(terms) == 1 {
		return terms[0], nil
	}
	return &Expr{And: terms}, nil
}

func (p *parser) not(depth int) (*Expr, error) {
	if err := p.count(depth); err != nil {
		return nil, err
	}
	if p.keyword("not") {
		e, err := p.not(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Expr{Not: e}, nil
	}
	if p.sym("(") {
		e, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if !p.sym(")") {
			return nil, p.fail("missing )")
		}
		return e, nil
	}
	return p.comparison()
}

func (p *parser) comparison() (*Expr, error) {
	col, ok := p.ident()
	if !ok {
		return nil, p.fail("a condition must start with a column")
	}
	if p.keyword("is") {
		negate := p.keyword("not")
		if !p.keyword("null") {
			return nil, p.fail("IS must be followed by [NOT] NULL")
		}
		return &Expr{Column: col, Op: OpIsNull, IsNull: !negate}, nil
	}
	negate := p.keyword("not")
	switch {
	case p.keyword("in"):
		if !p.sym("(") {
			return nil, p.fail("IN takes a parenthesised list")
		}
		e := &Expr{Column: col, Op: OpIn}
		if negate {
			e.Op = OpNin
		}
		for {
			if err := p.value(e); err != nil {
				return nil, err
			}
			if len(e.Values) > maxInList {
				return nil, p.fail("IN list too long")
			}
			if !p.sym(",") {
				break
			}
		}
		if !p.sym(")") {
			return nil, p.fail("missing ) after IN list")
		}
		return e, nil
	case p.keyword("like"), p.keyword("ilike"):
		op := OpLike
		if p.toks[p.pos-1].low == "ilike" {
			op = OpIlike
		}
		e := &Expr{Column: col, Op: op}
		if err := p.value(e); err != nil {
			return nil, err
		}
		if negate {
			return &Expr{Not: e}, nil
		}
		return e, nil
	case negate:
		return nil, p.fail("NOT must precede IN, LIKE or ILIKE here")
	}
	ops := map[string]Op{"=": OpEq, "<>": OpNeq, "!=": OpNeq, "<": OpLt, "<=": OpLte, ">": OpGt, ">=": OpGte}
	t := p.next()
	op, ok := ops[t.text]
	if t.kind != tokSym || !ok {
		return nil, p.fail("unsupported operator " + strconv.Quote(t.text))
	}
	e := &Expr{Column: col, Op: op}
	if err := p.value(e); err != nil {
		return nil, err
	}
	return e, nil
}

// value reads a literal or a parameter into e's values. A parameter is an
// empty value whose slot (Expr.Slots, kept only for expressions that have
// one) is its number.
func (p *parser) value(e *Expr) error {
	if p.sym("?") {
		p.params++
		for len(e.Slots) < len(e.Values) {
			e.Slots = append(e.Slots, 0)
		}
		e.Values = append(e.Values, "")
		e.Slots = append(e.Slots, p.params)
		return nil
	}
	v, err := p.literal()
	if err != nil {
		return err
	}
	e.Values = append(e.Values, v)
	if len(e.Slots) > 0 {
		e.Slots = append(e.Slots, 0)
	}
	return nil
}

// literal reads a string, a (possibly negative) number or a boolean.
func (p *parser) literal() (string, error) {
	neg := p.sym("-")
	t := p.next()
	switch {
	case t.kind == tokNumber:
		if neg {
			return "-" + t.text, nil
		}
		return t.text, nil
	case neg:
		return "", p.fail("- must precede a number")
	case t.kind == tokString:
		return t.text, nil
	case t.kind == tokWord && (t.low == "true" || t.low == "false"):
		return t.low, nil
	case t.kind == tokWord && t.low == "null":
		return "", p.fail("compare with NULL using IS NULL")
	}
	return "", p.fail("values must be literals")
}

// scanQuoted reads the quoted text that starts at s[i] (the quote q),
// where a doubled quote stands for itself, as SQL writes both string
// literals and quoted identifiers. It returns the text, the index after
// the closing quote, and false when the quote is never closed.
func scanQuoted(s string, i int, q byte) (string, int, bool) {
	var sb strings.Builder
	for i++; i < len(s); i++ {
		if s[i] != q {
			sb.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == q {
			sb.WriteByte(q)
			i++
			continue
		}
		return sb.String(), i + 1, true
	}
	return "", i, false
}
