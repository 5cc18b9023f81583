package request_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql/request"
)

var (
	hashA = core.DocumentHash("{ a }")
	hashB = core.DocumentHash("{ b }")
)

func TestDecodeBody(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    request.Params
		wantErr string // a substring of the *Error's message; "" for none
	}{
		{name: "query", body: `{"query":"{ a }"}`, want: request.Params{Query: "{ a }"}},
		{name: "every parameter", body: ` {"query":"query Q($n: Int) { a }","operationName":"Q","variables":{"n":1,"o":{"p":[true,null]}},"extensions":{"k":"v"}} ` + "\n",
			want: request.Params{Query: "query Q($n: Int) { a }", OperationName: "Q",
				Variables: map[string]any{"n": float64(1), "o": map[string]any{"p": []any{true, nil}}}, Extensions: map[string]any{"k": "v"}}},
		{name: "nulls are absent", body: `{"query":"{ a }","operationName":null,"variables":null,"extensions":null}`, want: request.Params{Query: "{ a }"}},
		{name: "unknown keys ignored", body: `{"query":"{ a }","foo":{"bar":1}}`, want: request.Params{Query: "{ a }"}},
		{name: "escaped key is the key", body: `{"\u0071uery":"{ a }"}`, want: request.Params{Query: "{ a }"}},
		{name: "hash alone", body: `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + strings.ToUpper(hashA) + `"}}}`,
			want: request.Params{Extensions: map[string]any{"persistedQuery": map[string]any{"version": float64(1), "sha256Hash": strings.ToUpper(hashA)}}, PersistedHash: hashA}},
		{name: "persistedQuery null is none", body: `{"query":"{ a }","extensions":{"persistedQuery":null}}`,
			want: request.Params{Query: "{ a }", Extensions: map[string]any{"persistedQuery": nil}}},

		{name: "empty", body: " \n", wantErr: "empty"},
		{name: "not JSON", body: `{"query":`, wantErr: "not valid JSON"},
		{name: "trailing value", body: `{"query":"{ a }"}{}`, wantErr: "not valid JSON"},
		{name: "trailing comma", body: `{"query":"{ a }",}`, wantErr: "not valid JSON"},
		{name: "a string", body: `"{ a }"`, wantErr: "JSON object"},
		{name: "missing query", body: `{}`, wantErr: "missing"},
		{name: "empty query", body: `{"query":""}`, wantErr: "missing"},
		{name: "query a number", body: `{"query":1}`, wantErr: "query must be a string"},
		{name: "operationName an object", body: `{"query":"{ a }","operationName":{}}`, wantErr: "operationName must be a string"},
		{name: "variables an array", body: `{"query":"{ a }","variables":[]}`, wantErr: "variables must be a JSON object"},
		{name: "extensions a string", body: `{"query":"{ a }","extensions":"x"}`, wantErr: "extensions must be a JSON object"},
		{name: "number out of range", body: `{"query":"{ a }","variables":{"n":1e400}}`, wantErr: "not valid JSON"},

		{name: "query twice", body: `{"query":"{ a }","query":"{ b }"}`, wantErr: `key "query" more than once`},
		{name: "query twice, the second null", body: `{"query":"{ a }","query":null}`, wantErr: "more than once"},
		{name: "a variable twice", body: `{"query":"{ a }","variables":{"v":{"w":1,"w":2}}}`, wantErr: `key "w" more than once`},
		{name: "a key twice in an array in an unknown key", body: `{"query":"{ a }","x":[{},{"y":1,"y":1}]}`, wantErr: "more than once"},
		{name: "sha256Hash twice", body: `{"extensions":{"persistedQuery":{"sha256Hash":"` + hashA + `","sha256Hash":"` + hashB + `"}}}`, wantErr: "more than once"},
		{name: "Query", body: `{"Query":"{ a }"}`, wantErr: "Query differs from query only in case"},
		{name: "query and QUERY null", body: `{"query":"{ a }","QUERY":null}`, wantErr: "only in case"},
		{name: "OperationName", body: `{"query":"{ a }","OperationName":"A"}`, wantErr: "only in case"},
		{name: "Variables", body: `{"query":"{ a }","Variables":{}}`, wantErr: "only in case"},
		{name: "EXTENSIONS", body: `{"query":"{ a }","EXTENSIONS":{}}`, wantErr: "only in case"},
		{name: "the long s folds to s", body: `{"query":"{ a }","extenſions":{}}`, wantErr: "only in case"},
		{name: "Sha256Hash", body: `{"extensions":{"persistedQuery":{"sha256Hash":"` + hashA + `","Sha256Hash":"` + hashB + `"}}}`,
			wantErr: "extensions.persistedQuery.Sha256Hash differs from extensions.persistedQuery.sha256Hash only in case"},
		{name: "Sha256Hash alone", body: `{"query":"{ a }","extensions":{"persistedQuery":{"Sha256Hash":"` + hashB + `"}}}`, wantErr: "only in case"},
		{name: "Version", body: `{"extensions":{"persistedQuery":{"Version":1,"sha256Hash":"` + hashA + `"}}}`, wantErr: "only in case"},
		{name: "PersistedQuery", body: `{"query":"{ a }","extensions":{"PersistedQuery":{"sha256Hash":"` + hashA + `"}}}`, wantErr: "extensions.PersistedQuery differs"},
		{name: "persistedQuery a string", body: `{"query":"{ a }","extensions":{"persistedQuery":"x"}}`, wantErr: "persistedQuery must be a JSON object"},
		{name: "hash too short", body: `{"extensions":{"persistedQuery":{"sha256Hash":"abc"}}}`, wantErr: "64 hex digits"},
		{name: "hash not hex", body: `{"extensions":{"persistedQuery":{"sha256Hash":"` + strings.Repeat("zz", 32) + `"}}}`, wantErr: "64 hex digits"},
		{name: "hash missing", body: `{"query":"{ a }","extensions":{"persistedQuery":{"version":1}}}`, wantErr: "64 hex digits"},
		{name: "version 2", body: `{"extensions":{"persistedQuery":{"version":2,"sha256Hash":"` + hashA + `"}}}`, wantErr: "version must be 1"},
		{name: "version null", body: `{"extensions":{"persistedQuery":{"version":null,"sha256Hash":"` + hashA + `"}}}`, wantErr: "version must be 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := request.DecodeBody([]byte(tt.body))
			if tt.wantErr != "" {
				var re *request.Error
				if !errors.As(err, &re) || !strings.Contains(re.Message, tt.wantErr) {
					t.Fatalf("got %+v, %v, want an *Error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %+v", err, tt.want)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestDecodeBodyNesting(t *testing.T) {
	deep := `{"query":"{ a }","variables":{"v":` + strings.Repeat("[", request.MaxDepth) + strings.Repeat("]", request.MaxDepth) + `}}`
	var re *request.Error
	if _, err := request.DecodeBody([]byte(deep)); !errors.As(err, &re) || !strings.Contains(re.Message, "nested deeper") {
		t.Fatalf("got %v, want an *Error about nesting", err)
	}
	ok := `{"query":"{ a }","variables":{"v":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`
	if _, err := request.DecodeBody([]byte(ok)); err != nil {
		t.Fatalf("got %v for 100 levels, want none", err)
	}
}

func TestDecodeBatch(t *testing.T) {
	if _, err := request.DecodeBody([]byte(` [{"query":"{ a }"}]`)); !errors.Is(err, request.ErrBatch) {
		t.Fatalf("DecodeBody of an array: got %v, want ErrBatch", err)
	}
	got, err := request.DecodeBatch([]byte(`[{"query":"{ a }"},{"query":"{ b }","operationName":"B"}]`), 2)
	if err != nil || len(got) != 2 || got[1].OperationName != "B" {
		t.Fatalf("got %+v, %v, want two requests", got, err)
	}
	if _, err := request.DecodeBatch([]byte(`[{"query":"{ a }"},{"query":"{ b }"},{"query":"{ c }"}]`), 2); !errors.Is(err, request.ErrBatchLimit) {
		t.Fatalf("got %v, want ErrBatchLimit", err)
	}
	for _, body := range []string{`[]`, `[1]`, `[{"query":"{ a }"},{"query":"{ a }","Query":"{ b }"}]`, `[{"query":"{ a }","query":"{ b }"}]`, `[`} {
		var re *request.Error
		if _, err := request.DecodeBatch([]byte(body), 5); !errors.As(err, &re) {
			t.Errorf("DecodeBatch(%s): got %v, want an *Error", body, err)
		}
	}
}

func TestDecodeQuery(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    request.Params
		wantErr string
	}{
		{name: "query", raw: "query=%7B+a+%7D", want: request.Params{Query: "{ a }"}},
		{name: "every parameter", raw: "query=q&operationName=Q&variables=%7B%22n%22%3A1%7D&extensions=%7B%22k%22%3A%22v%22%7D",
			want: request.Params{Query: "q", OperationName: "Q", Variables: map[string]any{"n": float64(1)}, Extensions: map[string]any{"k": "v"}}},
		{name: "empty and null JSON parameters are absent", raw: "query=q&variables=&extensions=null", want: request.Params{Query: "q"}},
		{name: "unknown parameters ignored", raw: "query=q&x=1", want: request.Params{Query: "q"}},
		{name: "hash alone", raw: "extensions=" + `%7B%22persistedQuery%22%3A%7B%22version%22%3A1%2C%22sha256Hash%22%3A%22` + hashA + `%22%7D%7D`,
			want: request.Params{Extensions: map[string]any{"persistedQuery": map[string]any{"version": float64(1), "sha256Hash": hashA}}, PersistedHash: hashA}},

		{name: "missing query", raw: "operationName=Q", wantErr: "missing"},
		{name: "bad escape", raw: "query=%zz", wantErr: "URL-encoded"},
		{name: "semicolon", raw: "query=q;x=1", wantErr: "URL-encoded"},
		{name: "query twice", raw: "query=a&query=b", wantErr: `"query" is given more than once`},
		{name: "an unknown parameter twice", raw: "query=q&x=1&x=2", wantErr: "more than once"},
		{name: "Query", raw: "query=a&Query=b", wantErr: "only in case"},
		{name: "escaped Query", raw: "%51uery=b", wantErr: "only in case"},
		{name: "variables not JSON", raw: "query=q&variables=%5B", wantErr: "variables is not valid JSON"},
		{name: "variables an array", raw: "query=q&variables=%5B1%5D", wantErr: "variables must be a JSON object"},
		{name: "variables with a key twice", raw: "query=q&variables=%7B%22n%22%3A1%2C%22n%22%3A2%7D", wantErr: "more than once"},
		{name: "extensions a string", raw: "query=q&extensions=%22x%22", wantErr: "extensions must be a JSON object"},
		{name: "Sha256Hash", raw: "extensions=" + `%7B%22persistedQuery%22%3A%7B%22Sha256Hash%22%3A%22` + hashA + `%22%7D%7D`, wantErr: "only in case"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := request.DecodeQuery(tt.raw)
			if tt.wantErr != "" {
				var re *request.Error
				if !errors.As(err, &re) || !strings.Contains(re.Message, tt.wantErr) {
					t.Fatalf("got %+v, %v, want an *Error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %+v", err, tt.want)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// TestPersistedHashOfGoValues shows the engine's reading of extensions it
// was handed in Go (not decoded from JSON) matching DecodeBody's.
func TestPersistedHashOfGoValues(t *testing.T) {
	tests := []struct {
		name    string
		ext     map[string]any
		want    string
		wantErr bool
	}{
		{name: "none", ext: nil},
		{name: "int version", ext: map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hashA}}, want: hashA},
		{name: "no version", ext: map[string]any{"persistedQuery": map[string]any{"sha256Hash": hashA}}, want: hashA},
		{name: "case twin", ext: map[string]any{"persistedQuery": map[string]any{"sha256Hash": hashA, "SHA256HASH": hashB}}, wantErr: true},
		{name: "hash a number", ext: map[string]any{"persistedQuery": map[string]any{"sha256Hash": 1}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := request.PersistedHash(tt.ext)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %q, %v, want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestHashes(t *testing.T) {
	byText := request.Params{Query: "{ a }"}
	byHash := request.Params{PersistedHash: hashA}
	if byText.DocumentHash() != hashA || byHash.DocumentHash() != hashA {
		t.Fatalf("got document hashes %s and %s, want %s for the text and for its hash", byText.DocumentHash(), byHash.DocumentHash(), hashA)
	}
	// printf '%s\nQ' "$(printf '{ a }' | sha256sum | cut -d' ' -f1)" | sha256sum
	const want = "e47558574a77e035750efe39d2ba45abcf673d3147c4c00a3b44c11b18c3a038"
	if got := request.OperationHash(hashA, "Q"); got != want {
		t.Fatalf("got OperationHash %s, want %s", got, want)
	}
	if request.OperationHash(hashA, "") == want || request.OperationHash(hashB, "Q") == want {
		t.Fatal("got the same OperationHash for another document or operation, want one naming both")
	}
}
