package observe

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strconv"

	"github.com/fraise-dev/fraise/core"
)

// JobID returns the idempotency key of the job for action number i of
// rule on event: the same inputs always give the same key.
func JobID(e core.ChangeEvent, ruleID string, i int) string {
	h := sha256.Sum256([]byte(e.Pos.String() + "/" + ruleID + "/" + strconv.Itoa(i)))
	return hex.EncodeToString(h[:16])
}

// ValidateRule checks what the database cannot: the CEL condition and the
// actions' templates and addresses. Errors are *core.Error with CodeInvalid
// naming the problem; GraphQL mutations call it before fn_*_observer_rule.
func ValidateRule(c *Compiler, r core.Rule) error {
	const op = "observe.ValidateRule"
	bad := func(format string, args ...any) error {
		return core.Errorf(core.CodeInvalid, format, args...).WithOp(op)
	}
	if _, err := c.Compile(r.Condition); err != nil {
		return err
	}
	if err := validateColumns(r.Columns); err != nil {
		return err
	}
	for _, o := range r.Operations {
		if !slices.Contains([]string{core.OpInsert, core.OpUpdate, core.OpDelete}, o) {
			return bad("unknown operation %q", o)
		}
	}
	if len(r.Actions) == 0 || len(r.Actions) > 10 {
		return bad("a rule has 1 to 10 actions")
	}
	for i, a := range r.Actions {
		switch a.Kind {
		case core.ActionWebhook, core.ActionSlack:
			u, err := url.Parse(a.URL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return bad("actions[%d]: url must be an http(s) URL", i)
			}
		case core.ActionEmail:
			if len(a.To) == 0 {
				return bad("actions[%d]: email needs recipients", i)
			}
			for _, to := range a.To {
				if _, err := mail.ParseAddress(to); err != nil {
					return bad("actions[%d]: bad recipient %q", i, to)
				}
			}
			if err := checkTemplate(r, a.Subject); err != nil {
				return bad("actions[%d]: subject: %s", i, core.ErrorMessage(err))
			}
		default:
			return bad("actions[%d]: unknown kind %q", i, a.Kind)
		}
		if err := checkTemplate(r, a.Template); err != nil {
			return bad("actions[%d]: template: %s", i, core.ErrorMessage(err))
		}
	}
	return nil
}

// checkTemplate parses src and checks that it reads only columns rule r
// captures: any other renders as nothing, which is never what was meant.
func checkTemplate(r core.Rule, src string) error {
	t, err := ParseTemplate(src)
	if err != nil {
		return err
	}
	if r.Columns == nil {
		return nil
	}
	for _, c := range t.columns() {
		if !slices.Contains(r.Columns, c) {
			return core.Errorf(core.CodeInvalid, "reads column %q, which the rule does not capture (add it to columns)", c).WithOp("observe.ValidateRule")
		}
	}
	return nil
}

// TestRule reports whether rule r matches event e and, if so, the messages
// its actions would send, without sending anything: the "test against a
// sample event" of rule management. p is the schema's protection, as the
// dispatcher applies it.
func TestRule(c *Compiler, r core.Rule, e core.ChangeEvent, p *Protection) (bool, []core.Message, error) {
	if err := ValidateRule(c, r); err != nil {
		return false, nil, err
	}
	set, err := NewRuleSet(c, []core.Rule{r}, p)
	if err != nil {
		return false, nil, err
	}
	jobs, err := set.Match(e)
	if err != nil {
		return false, nil, err
	}
	var msgs []core.Message
	for _, j := range jobs {
		m, err := BuildMessage(j)
		if err != nil {
			return true, nil, err
		}
		msgs = append(msgs, m)
	}
	return len(jobs) > 0, msgs, nil
}

type compiledRule struct {
	rule core.Rule
	cond *Condition
	keep func(string) bool // the columns it captures; nil: all
}

// RuleSet is the compiled rules of every tenant, indexed by tenant and
// table. It is immutable: the dispatcher swaps in a new one on change.
type RuleSet struct {
	byTenant map[string]map[string][]compiledRule
	count    int
}

// NewRuleSet compiles rules. A rule whose condition no longer compiles is
// an error: it was validated when stored, so the environment changed. p
// decides what the rules that name no columns capture (nil: everything).
func NewRuleSet(c *Compiler, rules []core.Rule, p *Protection) (*RuleSet, error) {
	s := &RuleSet{byTenant: map[string]map[string][]compiledRule{}}
	var errs []error
	for _, r := range rules {
		cond, err := c.Compile(r.Condition)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", r.ID, err))
			continue
		}
		t := s.byTenant[r.Tenant]
		if t == nil {
			t = map[string][]compiledRule{}
			s.byTenant[r.Tenant] = t
		}
		t[r.Table] = append(t[r.Table], compiledRule{r, cond, capture(r, p)})
		s.count++
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("observe: %d rules skipped: %v", len(errs), errs)
	}
	return s, nil
}

// Len returns the number of rules.
func (s *RuleSet) Len() int { return s.count }

// Match returns the jobs for the tenant's rules that e satisfies. Only the
// event's own tenant's rules are consulted. Each rule sees only the columns
// it captures: its condition is evaluated on them, and its jobs carry
// them alone.
func (s *RuleSet) Match(e core.ChangeEvent) ([]core.Job, error) {
	rules := s.byTenant[e.Tenant][e.Table]
	if len(rules) == 0 {
		return nil, nil
	}
	var vars Vars
	var jobs []core.Job
	for _, cr := range rules {
		if len(cr.rule.Operations) > 0 && !slices.Contains(cr.rule.Operations, e.Op) {
			continue
		}
		var rv Vars
		if cr.cond.prg != nil {
			// Decode the event only for a rule with a condition, once.
			if vars == nil {
				var err error
				if vars, err = EventVars(e); err != nil {
					return nil, err
				}
			}
			rv = vars
			if cr.keep != nil {
				rv = captureVars(vars, cr.keep)
			}
		}
		ok, err := cr.cond.Match(rv)
		if err != nil || !ok {
			continue
		}
		ev := e
		if cr.keep != nil {
			if ev, err = captureEvent(e, cr.keep); err != nil {
				return nil, err
			}
		}
		for i, a := range cr.rule.Actions {
			jobs = append(jobs, core.Job{
				ID: JobID(e, cr.rule.ID, i), Tenant: e.Tenant, RuleID: cr.rule.ID, RuleName: cr.rule.Name,
				Action: a, Event: ev, TraceParent: e.TraceParent,
			})
		}
	}
	return jobs, nil
}
