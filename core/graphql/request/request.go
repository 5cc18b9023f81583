// Package request decodes the parameters of a GraphQL-over-HTTP request
// (query, operationName, variables and extensions, with its persistedQuery)
// from a POST body or a GET query string, and names the operation a request
// runs by a hash.
//
// extauthz decides on what this package decodes and the core executes what
// it decodes: both call it, so that the two cannot read one request two
// ways. It is strict where JSON and encoding/json are lax, because two lax
// readers resolve the same ambiguity differently: a key given twice, at any
// depth, and a key that differs from a parameter's name only in case
// ("Sha256Hash", "Query") are refused, not resolved (security #13: a body
// with both sha256Hash and Sha256Hash was decided by extauthz on one and
// run by the core on the other).
//
// The package knows nothing of HTTP: a caller passes the body or the raw
// query string and maps the errors to its own refusals.
package request

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/fraise-dev/fraise/core"
)

// Params are the parameters of one GraphQL request.
type Params struct {
	// Query is the document; "" when the request names a persisted one by
	// PersistedHash alone.
	Query string
	// OperationName names the operation of Query to run; "" when the
	// document has one.
	OperationName string
	// Variables are the variable values, as encoding/json decodes JSON
	// into an any (numbers are float64); nil when none.
	Variables map[string]any
	// Extensions are the request's extensions, every one of them; nil
	// when none.
	Extensions map[string]any
	// PersistedHash is extensions.persistedQuery.sha256Hash in lower-case
	// hex (see PersistedHash); "" when the request has no persistedQuery.
	PersistedHash string
}

// DocumentHash names the document the request runs, as the core's engine
// and extauthz's persisted store name documents (core.DocumentHash): its
// persisted hash when it gives one (a document run by hash is the document
// whose SHA-256 that is, and a query sent with a hash must match it), and
// otherwise the SHA-256 of its query.
func (p Params) DocumentHash() string {
	if p.PersistedHash != "" {
		return p.PersistedHash
	}
	return core.DocumentHash(p.Query)
}

// OperationHash names one operation of one document: the lower-case hex
// SHA-256 of documentHash (core.DocumentHash of the document), a newline
// and operationName (as the request gives it, "" when the document has
// one operation). extauthz puts the hash of the operation it decided on in
// the identity assertion, and the core runs a request only when the
// request's own hash, OperationHash(p.DocumentHash(), p.OperationName), is
// that one. A document hash is 64 characters, so no two pairs share an
// input.
func OperationHash(documentHash, operationName string) string {
	h := sha256.New()
	h.Write([]byte(documentHash))
	h.Write([]byte{'\n'})
	h.Write([]byte(operationName))
	return hex.EncodeToString(h.Sum(nil))
}

// Error is a request that cannot be decoded. Its message names the
// problem in the client's own terms and is safe to show the client.
type Error struct {
	Message string
}

func (e *Error) Error() string { return e.Message }

func invalid(format string, args ...any) error {
	return &Error{Message: fmt.Sprintf(format, args...)}
}

// ErrBatch is DecodeBody's answer to a body that is a JSON array, a batch
// of requests (not part of GraphQL over HTTP): the caller refuses it or
// decodes it with DecodeBatch.
var ErrBatch = errors.New("the request body is a batch (a JSON array)")

// ErrBatchLimit is DecodeBatch's answer to a batch of more requests than
// its limit.
var ErrBatchLimit = errors.New("the batch has more requests than allowed")

// MaxDepth bounds the nesting of the JSON values a request may carry, as
// encoding/json bounds it.
const MaxDepth = 10000

// The parameters a request names, by their exact names.
const (
	paramQuery         = "query"
	paramOperationName = "operationName"
	paramVariables     = "variables"
	paramExtensions    = "extensions"
)

var params = []string{paramQuery, paramOperationName, paramVariables, paramExtensions}

// DecodeBody decodes a POST body: one JSON object. A body that is a JSON
// array is ErrBatch; any other problem is an *Error.
func DecodeBody(data []byte) (Params, error) {
	data = trimJSONSpace(data)
	if len(data) == 0 {
		return Params{}, invalid("the request body is empty")
	}
	if data[0] == '[' {
		return Params{}, ErrBatch
	}
	v, err := decodeJSON(data, "the request body")
	if err != nil {
		return Params{}, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Params{}, invalid("the request body must be a JSON object")
	}
	return fromObject(m)
}

// DecodeBatch decodes a POST body that is a JSON array of at most max
// request objects (ErrBatchLimit past it). An entry's problem is an *Error
// naming the entry.
func DecodeBatch(data []byte, max int) ([]Params, error) {
	v, err := decodeJSON(trimJSONSpace(data), "the request body")
	if err != nil {
		return nil, err
	}
	items, ok := v.([]any)
	if !ok {
		return nil, invalid("the request body must be a JSON array")
	}
	if len(items) == 0 {
		return nil, invalid("the batch is empty")
	}
	if len(items) > max {
		return nil, ErrBatchLimit
	}
	out := make([]Params, len(items))
	for i, item := range items {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, invalid("batch entry %d: the request must be a JSON object", i)
		}
		p, err := fromObject(m)
		if err != nil {
			return nil, invalid("batch entry %d: %s", i, err.Error())
		}
		out[i] = p
	}
	return out, nil
}

// DecodeQuery decodes a GET request's URL query string (without the "?"):
// each parameter at most once, variables and extensions as JSON objects
// read as strictly as a POST body.
func DecodeQuery(rawQuery string) (Params, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Params{}, invalid("the query string is not URL-encoded")
	}
	for k, vs := range q {
		if len(vs) > 1 {
			return Params{}, invalid("parameter %q is given more than once", k)
		}
		if err := checkCase(k, params, ""); err != nil {
			return Params{}, err
		}
	}
	p := Params{Query: q.Get(paramQuery), OperationName: q.Get(paramOperationName)}
	for _, name := range []string{paramVariables, paramExtensions} {
		raw := q.Get(name)
		if raw == "" {
			continue
		}
		v, err := decodeJSON([]byte(raw), name)
		if err != nil {
			return Params{}, err
		}
		m, ok := v.(map[string]any)
		if !ok && v != nil {
			return Params{}, invalid("%s must be a JSON object", name)
		}
		if name == paramVariables {
			p.Variables = m
		} else {
			p.Extensions = m
		}
	}
	return finish(p)
}

// fromObject reads the parameters of one decoded request object.
func fromObject(m map[string]any) (Params, error) {
	var p Params
	for k, v := range m {
		if err := checkCase(k, params, ""); err != nil {
			return Params{}, err
		}
		if v == nil {
			continue // null is an absent parameter
		}
		var ok bool
		switch k {
		case paramQuery:
			p.Query, ok = v.(string)
		case paramOperationName:
			p.OperationName, ok = v.(string)
		case paramVariables:
			p.Variables, ok = v.(map[string]any)
		case paramExtensions:
			p.Extensions, ok = v.(map[string]any)
		default:
			ok = true // other keys are ignored, as GraphQL over HTTP allows
		}
		if !ok {
			if k == paramQuery || k == paramOperationName {
				return Params{}, invalid("%s must be a string", k)
			}
			return Params{}, invalid("%s must be a JSON object", k)
		}
	}
	return finish(p)
}

// finish reads the persisted hash and refuses a request that names no
// document.
func finish(p Params) (Params, error) {
	h, err := PersistedHash(p.Extensions)
	if err != nil {
		return Params{}, err
	}
	p.PersistedHash = h
	if p.Query == "" && p.PersistedHash == "" {
		return Params{}, invalid("the query parameter is missing")
	}
	return p, nil
}

// PersistedHash reads extensions.persistedQuery (automatic persisted
// queries and trusted documents): "" when there is none (absent or null),
// and otherwise its sha256Hash, 64 hex digits, in lower case. The version,
// when given, must be 1. A key that differs from persistedQuery, version
// or sha256Hash only in case is an *Error, as DecodeBody refuses it: the
// engine reads the hash of requests built in Go with this function too.
func PersistedHash(extensions map[string]any) (string, error) {
	const pqKey = "persistedQuery"
	for k := range extensions {
		if err := checkCase(k, []string{pqKey}, "extensions."); err != nil {
			return "", err
		}
	}
	v := extensions[pqKey]
	if v == nil {
		return "", nil
	}
	pq, ok := v.(map[string]any)
	if !ok {
		return "", invalid("extensions.persistedQuery must be a JSON object")
	}
	for k := range pq {
		if err := checkCase(k, []string{"version", "sha256Hash"}, "extensions.persistedQuery."); err != nil {
			return "", err
		}
	}
	if ver, ok := pq["version"]; ok && !isOne(ver) {
		return "", invalid("extensions.persistedQuery.version must be 1")
	}
	h, _ := pq["sha256Hash"].(string)
	if len(h) != 64 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
		return "", invalid("extensions.persistedQuery.sha256Hash must be 64 hex digits")
	}
	return strings.ToLower(h), nil
}

// isOne reports whether v is the number 1, however a caller built it.
func isOne(v any) bool {
	switch n := v.(type) {
	case float64:
		return n == 1
	case int:
		return n == 1
	case int64:
		return n == 1
	case json.Number:
		return n == "1"
	}
	return false
}

// checkCase refuses key when it differs from one of known only in case:
// encoding/json would read it as that parameter, a map lookup would not.
func checkCase(key string, known []string, prefix string) error {
	for _, k := range known {
		if key != k && strings.EqualFold(key, k) {
			return invalid("%s%s differs from %s%s only in case", prefix, key, prefix, k)
		}
	}
	return nil
}

// trimJSONSpace trims the whitespace JSON allows around a value, and no
// other.
func trimJSONSpace(b []byte) []byte {
	return bytes.Trim(b, " \t\r\n")
}

// decodeJSON decodes one JSON value, refusing a key given twice in any
// object, at any depth. what names the value in errors.
func decodeJSON(data []byte, what string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	v, err := decodeValue(dec, what, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("%s is not valid JSON: data after the value", what)
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, what string, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, invalid("%s is not valid JSON", what)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, float64, bool or nil
	}
	if depth >= MaxDepth {
		return nil, invalid("%s is nested deeper than %d", what, MaxDepth)
	}
	switch d {
	case '{':
		m := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, invalid("%s is not valid JSON", what)
			}
			k, _ := kt.(string) // Token returns object keys as strings
			if _, dup := m[k]; dup {
				return nil, invalid("%s gives the key %q more than once", what, k)
			}
			v, err := decodeValue(dec, what, depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		if _, err := dec.Token(); err != nil {
			return nil, invalid("%s is not valid JSON", what)
		}
		return m, nil
	case '[':
		a := []any{}
		for dec.More() {
			v, err := decodeValue(dec, what, depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, invalid("%s is not valid JSON", what)
		}
		return a, nil
	}
	return nil, invalid("%s is not valid JSON", what)
}
