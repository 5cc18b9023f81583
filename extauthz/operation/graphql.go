// Package operation reads, from the request Envoy forwards to extauthz, what
// a policy needs to decide on it: for GraphQL the operation type, its name
// and the root fields it selects; for Arrow Flight the method and dataset.
// Everything it parses is untrusted client input, so every parser here is
// bounded and fuzzed.
package operation

import (
	"errors"
	"fmt"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/fraise-dev/fraise/core/graphql/request"
)

// MaxDocumentBytes bounds the GraphQL document extauthz parses. Envoy caps
// the body it forwards (max_request_bytes) already; this cap also holds for
// GET requests and for documents resolved from a persisted hash.
const MaxDocumentBytes = 1 << 20

// MaxTokens bounds the lexer tokens of one document, which bounds the
// parser's recursion depth: a document of a million nested braces is
// refused long before it can exhaust the stack.
const MaxTokens = 50_000

// ErrInvalid wraps every reason a request is not a GraphQL request extauthz
// can read. Its text is safe to show the client: it names syntax, not
// policy.
var ErrInvalid = errors.New("invalid GraphQL request")

// Request is a GraphQL-over-HTTP request's parameters.
type Request struct {
	Query         string
	OperationName string
	// PersistedHash is the sha256Hash of the persisted-query extension, when
	// the client sent one (with or without the query itself).
	PersistedHash string
}

// GraphQL is what a policy sees of a GraphQL operation.
type GraphQL struct {
	// Operation is "query", "mutation" or "subscription".
	Operation string `json:"operation"`
	// Name is the operation's name, "" when anonymous.
	Name string `json:"name"`
	// RootFields are the names (never the aliases) of the fields the
	// operation selects at its root, fragments spread at the root included,
	// each once, in document order.
	RootFields []string `json:"root_fields"`
}

// ParseRequest reads the GraphQL request parameters from a POST body (JSON)
// or, for GET, from the URL query string rawQuery, as GraphQL over HTTP
// defines them. It reads them with the decoder the core reads them with
// (core/graphql/request), so that the policy decides on the operation the
// core runs. It does not parse the document itself: see Parse.
func ParseRequest(method, rawQuery string, data []byte) (Request, error) {
	var p request.Params
	var err error
	switch method {
	case "GET", "HEAD":
		p, err = request.DecodeQuery(rawQuery)
	case "POST":
		p, err = request.DecodeBody(data)
	default:
		return Request{}, fmt.Errorf("%w: method %s", ErrInvalid, method)
	}
	if errors.Is(err, request.ErrBatch) {
		// Batched (array) requests are not part of GraphQL over HTTP;
		// refusing them here keeps one operation per decision.
		return Request{}, fmt.Errorf("%w: body must be one JSON object", ErrInvalid)
	}
	var re *request.Error
	if errors.As(err, &re) {
		return Request{}, fmt.Errorf("%w: %s", ErrInvalid, re.Message)
	}
	if err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(p.Query) > MaxDocumentBytes {
		return Request{}, fmt.Errorf("%w: query longer than %d bytes", ErrInvalid, MaxDocumentBytes)
	}
	return Request{Query: p.Query, OperationName: p.OperationName, PersistedHash: p.PersistedHash}, nil
}

// Parse parses document and returns the operation a request runs: the one
// named operationName, or the only one when operationName is "".
func Parse(document, operationName string) (GraphQL, error) {
	if len(document) > MaxDocumentBytes {
		return GraphQL{}, fmt.Errorf("%w: query longer than %d bytes", ErrInvalid, MaxDocumentBytes)
	}
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: document}, MaxTokens)
	if err != nil {
		return GraphQL{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	op, err := pick(doc.Operations, operationName)
	if err != nil {
		return GraphQL{}, err
	}
	fields := make([]string, 0, len(op.SelectionSet))
	seen := make(map[string]bool, len(op.SelectionSet))
	// frags indexes the fragments by name, the first of each name as
	// Fragments.ForName finds it: looking each up among all of them made a
	// document of many fragments cost the square of their number.
	frags := make(map[string]*ast.FragmentDefinition, len(doc.Fragments))
	for _, f := range doc.Fragments {
		if _, ok := frags[f.Name]; !ok {
			frags[f.Name] = f
		}
	}
	// state marks fragments being expanded (1) and expanded (2). Expanding
	// a fragment once is enough, since only the set of names matters; that
	// keeps a document of fragments that each spread the next one twice
	// linear instead of exponential.
	state := make(map[string]int8)
	var walk func(ast.SelectionSet) error
	walk = func(set ast.SelectionSet) error {
		for _, sel := range set {
			switch s := sel.(type) {
			case *ast.Field:
				if !seen[s.Name] {
					seen[s.Name] = true
					fields = append(fields, s.Name)
				}
			case *ast.InlineFragment:
				if err := walk(s.SelectionSet); err != nil {
					return err
				}
			case *ast.FragmentSpread:
				switch state[s.Name] {
				case 1:
					return fmt.Errorf("%w: fragment %q spreads itself", ErrInvalid, s.Name)
				case 2:
					continue
				}
				def := frags[s.Name]
				if def == nil {
					return fmt.Errorf("%w: unknown fragment %q", ErrInvalid, s.Name)
				}
				state[s.Name] = 1
				if err := walk(def.SelectionSet); err != nil {
					return err
				}
				state[s.Name] = 2
			}
		}
		return nil
	}
	if err := walk(op.SelectionSet); err != nil {
		return GraphQL{}, err
	}
	return GraphQL{Operation: string(op.Operation), Name: op.Name, RootFields: fields}, nil
}

func pick(ops ast.OperationList, name string) (*ast.OperationDefinition, error) {
	if len(ops) == 0 {
		return nil, fmt.Errorf("%w: no operation in the document", ErrInvalid)
	}
	if name == "" {
		if len(ops) > 1 {
			return nil, fmt.Errorf("%w: operationName is required when the document has several operations", ErrInvalid)
		}
		return ops[0], nil
	}
	var found *ast.OperationDefinition
	for _, op := range ops {
		if op.Name == name {
			if found != nil {
				return nil, fmt.Errorf("%w: operation %q is defined twice", ErrInvalid, name)
			}
			found = op
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no operation named %q", ErrInvalid, name)
	}
	return found, nil
}
