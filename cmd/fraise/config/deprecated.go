package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// Rename is a key (or a whole table) that moved: Load accepts it under
// its Old name for one release, with a warning, as if it had been written
// under New. Both keep a field in Config meanwhile, with the same type;
// Load fills the old field from the new one, so that code not yet moved
// to the new key reads the value in force.
type Rename struct {
	Old, New string // dotted TOML paths, e.g. "flight.max_exports"
}

// renames is the table of moved keys. An entry stays for one release
// after the one that moved the key, then goes, with the old field.
var renames = []Rename{
	// Issue 17: one admission section for every kind of work.
	{Old: "flight.max_exports", New: "admission.flight.max_concurrent"},
	{Old: "flight.max_exports_per_tenant", New: "admission.flight.max_concurrent_per_tenant"},
	{Old: "observers.workers", New: "admission.observers.max_concurrent"},
	{Old: "observers.per_tenant", New: "admission.observers.max_concurrent_per_tenant"},
}

// Deprecation is a renamed key a configuration set under its old name:
// Load returns them in Config.Deprecations for the caller to log once it
// has a logger.
type Deprecation struct {
	Old, New string
	// Env is the environment variable that set it, "" for fraise.toml.
	Env string
}

// String is the warning to log.
func (d Deprecation) String() string {
	where := d.Old
	if d.Env != "" {
		where = d.Env
	}
	return fmt.Sprintf("%s is deprecated and will be removed in the next release: set %s instead", where, d.New)
}

// envName is the FRAISE_* variable of the dotted key path.
func envName(path string) string {
	return "FRAISE_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// field returns the field of v (a Config) at the dotted TOML path.
func field(v reflect.Value, path string) (reflect.Value, bool) {
	for _, name := range strings.Split(path, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		found := false
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Tag.Get("toml") == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
	}
	return v, true
}

// envSet returns the variable that sets the key at path, or any key of
// the table at path, "" when none does.
func envSet(t reflect.Type, name string, getenv func(string) string) string {
	if t.Kind() != reflect.Struct || t == reflect.TypeOf(Duration{}) {
		if getenv(name) != "" {
			return name
		}
		return ""
	}
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		if n := envSet(t.Field(i).Type, name+"_"+strings.ToUpper(tag), getenv); n != "" {
			return n
		}
	}
	return ""
}

// applyRenames moves each renamed key set under its old name, in the file
// (md; nil without a file) or the environment, to its new one, and
// returns a Deprecation for each. Setting both names is an error naming
// both: which one was meant cannot be known.
func applyRenames(c *Config, md *toml.MetaData, getenv func(string) string) ([]Deprecation, error) {
	var (
		deps []Deprecation
		errs []error
	)
	v := reflect.ValueOf(c).Elem()
	set := func(path string, f reflect.Value) (bool, string) {
		if md != nil && md.IsDefined(strings.Split(path, ".")...) {
			return true, ""
		}
		if n := envSet(f.Type(), envName(path), getenv); n != "" {
			return true, n
		}
		return false, ""
	}
	for _, r := range renames {
		oldF, ok1 := field(v, r.Old)
		newF, ok2 := field(v, r.New)
		if !ok1 || !ok2 || oldF.Type() != newF.Type() {
			panic(fmt.Sprintf("config: rename %s → %s: no such fields of one type", r.Old, r.New)) // a mistake in the table
		}
		oldSet, oldEnv := set(r.Old, oldF)
		if !oldSet {
			continue
		}
		if newSet, _ := set(r.New, newF); newSet {
			errs = append(errs, fmt.Errorf("%s and %s are both set: %s is the deprecated name of %s; keep %s only",
				r.Old, r.New, r.Old, r.New, r.New))
			continue
		}
		newF.Set(oldF)
		deps = append(deps, Deprecation{Old: r.Old, New: r.New, Env: oldEnv})
	}
	syncRenamed(c)
	return deps, errors.Join(errs...)
}

// syncRenamed sets each old field from its new one.
func syncRenamed(c *Config) {
	v := reflect.ValueOf(c).Elem()
	for _, r := range renames {
		oldF, _ := field(v, r.Old)
		newF, _ := field(v, r.New)
		oldF.Set(newF)
	}
}

// setAs names, after a key a problem is reported on, the deprecated name
// it was set under, so that the operator finds what they wrote.
func (c Config) setAs(key string) string {
	for _, d := range c.Deprecations {
		if d.New == key {
			if d.Env != "" {
				return key + " (set as " + d.Env + ")"
			}
			return key + " (set as " + d.Old + ")"
		}
	}
	return key
}
