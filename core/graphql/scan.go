package graphql

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"strconv"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/lexer"
)

// scan reads a document's tokens once, with the parser's own lexer, before
// the document is parsed, and returns the hash of its tokens: of their
// kinds and values, without comments, whitespace or commas. Two documents
// with one hash parse to the same tree, positions aside, so the hash keys
// what validation found of a document (Engine.valid) however a client
// formats or comments it.
//
// Parsing allocates a node for every selection: twenty thousand copies of
// one field cost tens of milliseconds to parse. Their tokens alone show
// them over the limits, so scan refuses such a document as soon as its
// tokens do, having read only that far:
//
//   - more selections written in the document than Options.MaxSelections
//     (checkLimits counts each of them at least once), or
//   - more aliases written in the body of an operation that could run
//     (the one named opName, or any when opName is "") than
//     Options.MaxAliases (checkLimits counts each of those at least once).
//
// A document that does not lex is left to the parser, which reports it.
func (e *Engine) scan(ctx context.Context, query, opName string) (key [32]byte, resp *Response) {
	l := lexer.New(&ast.Source{Name: "request", Input: query})
	h := sha256.New()
	buf := make([]byte, 0, 4096+64)
	var (
		braces, parens int  // selection-set braces; parentheses (arguments, values)
		first          bool // between definitions: the next token starts one
		keyword        bool // the last token was an operation's keyword
		counted        bool // in an operation whose aliases count
		aliases        int  // aliases written in that operation's body
		selections     int  // selections written in the document
		spread, on     bool // after ..., after ... on
		prev           lexer.Type
		prevName       string
		tokens         int
	)
	first = true
	for {
		t, err := l.ReadToken()
		if err != nil {
			return [32]byte{}, nil
		}
		if t.Kind == lexer.Comment {
			continue
		}
		if tokens++; tokens%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return [32]byte{}, cancelled(err)
			}
		}
		// Each token as its kind, its value's length and its value, so
		// that no two sequences of tokens write the same bytes.
		buf = append(buf, byte(t.Kind))
		buf = binary.AppendUvarint(buf, uint64(len(t.Value)))
		buf = append(buf, t.Value...)
		if len(buf) >= 4096 || t.Kind == lexer.EOF {
			h.Write(buf)
			buf = buf[:0]
		}
		if t.Kind == lexer.EOF {
			break
		}
		switch {
		case t.Kind == lexer.ParenL:
			parens++
		case t.Kind == lexer.ParenR:
			parens--
		case parens > 0:
			// Arguments, variable definitions and values: braces here are
			// input objects, names are arguments and enum values.
		case braces == 0:
			// Between definitions, or in one's header.
			switch {
			case t.Kind == lexer.BraceL:
				if first { // a query in shorthand, { ... }
					counted = opName == ""
				}
				braces, first = 1, false
			case t.Kind == lexer.Name && first:
				// query, mutation, subscription, or fragment.
				first = false
				keyword = t.Value != "fragment"
				counted = keyword && opName == ""
				prev, prevName = t.Kind, t.Value
				continue
			case t.Kind == lexer.Name && keyword && prev == lexer.Name:
				counted = opName == "" || t.Value == opName // the operation's name
			}
		case t.Kind == lexer.BraceL:
			braces++
		case t.Kind == lexer.BraceR:
			if braces--; braces == 0 {
				first, counted, aliases = true, false, 0
			}
		case t.Kind == lexer.Spread:
			selections++
			spread = true
		case t.Kind == lexer.Name && spread:
			spread, on = false, t.Value == "on" // a fragment's name, or on
			prev, prevName = t.Kind, t.Value
			continue
		case t.Kind == lexer.Name && on:
			// The type condition.
		case t.Kind == lexer.Name && prev == lexer.At:
			// A directive.
		case t.Kind == lexer.Name && prev == lexer.Colon:
			if counted && t.Value != prevName {
				aliases++ // prevName: the alias
			}
		case t.Kind == lexer.Name:
			selections++
		}
		keyword, spread, on = false, false, false
		if selections > e.opts.MaxSelections {
			return [32]byte{}, requestError(CodeSelectionLimit, "the document has more than "+strconv.Itoa(e.opts.MaxSelections)+
				" selections, the limit")
		}
		if aliases > e.opts.MaxAliases {
			return [32]byte{}, requestError(CodeAliasLimit, "the operation has more than "+strconv.Itoa(e.opts.MaxAliases)+
				" aliases, the limit")
		}
		prev = t.Kind
		if t.Kind == lexer.Name {
			prevName = t.Value
		}
	}
	h.Sum(key[:0])
	return key, nil
}
