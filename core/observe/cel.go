package observe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/google/cel-go/cel"

	"github.com/fraise-dev/fraise/core"
)

// MaxConditionLength bounds a condition's source text.
const MaxConditionLength = 4096

// conditionCostLimit bounds the work one evaluation may do, so a condition
// cannot make the dispatcher spin (CEL has no unbounded loops, but
// comprehensions over large lists can be quadratic).
const conditionCostLimit = 100_000

// maxCachedConditions bounds the compiled-program cache.
const maxCachedConditions = 10_000

// Condition is a compiled CEL condition over an event. Its variables are
// op, table, tenant (strings), key, before and after (maps of the row's
// columns; empty when there is no such row) and changed (a list of column
// names), e.g. `op == "INSERT" && after.total > 1000`.
type Condition struct {
	src string
	prg cel.Program
}

// Compiler compiles conditions once and caches the programs by source.
// It is safe for concurrent use.
type Compiler struct {
	env   *cel.Env
	mu    sync.Mutex
	cache map[string]*Condition
}

// NewCompiler returns a compiler with the event's variables declared.
func NewCompiler() *Compiler {
	env, err := cel.NewEnv(
		cel.Variable("op", cel.StringType),
		cel.Variable("table", cel.StringType),
		cel.Variable("tenant", cel.StringType),
		cel.Variable("key", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("before", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("after", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("changed", cel.ListType(cel.StringType)),
		cel.CrossTypeNumericComparisons(true),
	)
	if err != nil {
		// The declarations are constants: failing here is a programming error.
		panic(fmt.Sprintf("observe: CEL environment: %v", err))
	}
	return &Compiler{env: env, cache: map[string]*Condition{}}
}

// Compile returns the condition for src, compiling it on first use. An
// empty src matches every event. Errors are *core.Error with CodeInvalid
// and a message saying what is wrong with the expression.
func (c *Compiler) Compile(src string) (*Condition, error) {
	c.mu.Lock()
	cond, ok := c.cache[src]
	c.mu.Unlock()
	if ok {
		return cond, nil
	}
	cond, err := c.compile(src)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.cache) >= maxCachedConditions {
		clear(c.cache)
	}
	c.cache[src] = cond
	c.mu.Unlock()
	return cond, nil
}

func (c *Compiler) compile(src string) (*Condition, error) {
	const op = "observe.Compile"
	if src == "" {
		return &Condition{}, nil
	}
	if len(src) > MaxConditionLength {
		return nil, core.Errorf(core.CodeInvalid, "condition longer than %d bytes", MaxConditionLength).WithOp(op)
	}
	ast, iss := c.env.Compile(src)
	if iss.Err() != nil {
		return nil, core.Errorf(core.CodeInvalid, "invalid condition: %v", iss.Err()).WithOp(op)
	}
	if !ast.OutputType().IsExactType(cel.BoolType) && !ast.OutputType().IsExactType(cel.DynType) {
		return nil, core.Errorf(core.CodeInvalid, "condition must be a boolean, not %s", ast.OutputType()).WithOp(op)
	}
	prg, err := c.env.Program(ast, cel.CostLimit(conditionCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, core.Errorf(core.CodeInvalid, "invalid condition: %v", err).WithOp(op)
	}
	return &Condition{src: src, prg: prg}, nil
}

// Vars are an event's condition variables, decoded once and shared by
// every rule the event is matched against.
type Vars map[string]any

// EventVars decodes e into condition variables.
func EventVars(e core.ChangeEvent) (Vars, error) {
	obj := func(raw json.RawMessage) (map[string]any, error) {
		m := map[string]any{}
		if len(raw) == 0 || string(raw) == "null" {
			return m, nil
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return nil, err
		}
		return numbers(m).(map[string]any), nil
	}
	before, err := obj(e.Before)
	if err != nil {
		return nil, fmt.Errorf("observe: event before: %w", err)
	}
	after, err := obj(e.After)
	if err != nil {
		return nil, fmt.Errorf("observe: event after: %w", err)
	}
	key, err := obj(e.Key)
	if err != nil {
		return nil, fmt.Errorf("observe: event key: %w", err)
	}
	changed := e.Changed
	if changed == nil {
		changed = []string{}
	}
	return Vars{"op": e.Op, "table": e.Table, "tenant": e.Tenant, "key": key, "before": before, "after": after,
		"changed": changed}, nil
}

// Match reports whether the event with vars satisfies the condition. An
// evaluation error (a missing column, a type mismatch) is returned with
// false: the rule does not match.
func (c *Condition) Match(vars Vars) (bool, error) {
	if c == nil || c.prg == nil {
		return true, nil
	}
	out, _, err := c.prg.Eval(map[string]any(vars))
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("condition gave %v, not a boolean", out.Type())
	}
	return b, nil
}

// String returns the condition's source.
func (c *Condition) String() string { return c.src }

// numbers turns JSON numbers into int64 when they are integers (so CEL's
// integer operators, % included, apply to integer columns) and float64
// otherwise.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
		return x
	}
	return v
}
