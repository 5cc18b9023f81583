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
	// Issue 17: the process `fraise serve` runs is the server; "core"
	// names the domain packages alone. FRAISE_CORE_* moves likewise.
	{Old: "core", New: "server"},
}

// Deprecation is a renamed key a configuration set under its old name:
// Load returns them in Config.Deprecations for the caller to log once it
// has a logger.
type Deprecation struct {
	// Old and New are the dotted key paths. For a table set in the
	// environment, they are the key of the variable (core.http_addr for
	// FRAISE_CORE_HTTP_ADDR), one Deprecation per variable, so that each
	// warning names what to write instead.
	Old, New string
	// Env is the environment variable that set it, "" for fraise.toml.
	Env string
	// Table is set when Old is a whole table renamed in fraise.toml.
	Table bool
}

// String is the warning to log: it names what was written and what to
// write instead, in the same place (file or environment).
func (d Deprecation) String() string {
	where, instead := d.Old, d.New
	switch {
	case d.Env != "":
		where, instead = d.Env, envName(d.New)
	case d.Table:
		where, instead = "["+d.Old+"]", "["+d.New+"]"
	}
	return fmt.Sprintf("%s is deprecated and will be removed in the next release: set %s instead", where, instead)
}

// envName is the FRAISE_* variable of the dotted key path.
func envName(path string) string {
	return "FRAISE_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// isTable reports whether t is a table of fraise.toml (a struct other
// than a Duration, which is written as one value).
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != reflect.TypeOf(Duration{})
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

// envVar is an environment variable set for a key.
type envVar struct {
	path, name string // dotted key path, variable
}

// envSet returns the variables that set the key at path, of type t: the
// one of a value, or those of every key of a table.
func envSet(t reflect.Type, path string, getenv func(string) string) []envVar {
	if !isTable(t) {
		if n := envName(path); getenv(n) != "" {
			return []envVar{{path, n}}
		}
		return nil
	}
	var vars []envVar
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		vars = append(vars, envSet(t.Field(i).Type, path+"."+tag, getenv)...)
	}
	return vars
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
	inFile := func(path string) bool { return md != nil && md.IsDefined(strings.Split(path, ".")...) }
	for _, r := range renames {
		oldF, ok1 := field(v, r.Old)
		newF, ok2 := field(v, r.New)
		if !ok1 || !ok2 || oldF.Type() != newF.Type() {
			panic(fmt.Sprintf("config: rename %s → %s: no such fields of one type", r.Old, r.New)) // a mistake in the table
		}
		oldFile, oldEnv := inFile(r.Old), envSet(oldF.Type(), r.Old, getenv)
		if !oldFile && len(oldEnv) == 0 {
			continue
		}
		if inFile(r.New) || len(envSet(newF.Type(), r.New, getenv)) > 0 {
			o, n := r.Old, r.New
			if isTable(oldF.Type()) {
				o, n = "["+o+"]", "["+n+"]"
			}
			errs = append(errs, fmt.Errorf("%s and %s are both set: %s is the deprecated name of %s; keep %s only",
				o, n, o, n, n))
			continue
		}
		// The old field holds the file's and the environment's values
		// over the defaults (which it mirrors): it becomes the new one.
		newF.Set(oldF)
		if oldFile {
			deps = append(deps, Deprecation{Old: r.Old, New: r.New, Table: isTable(oldF.Type())})
		}
		for _, e := range oldEnv {
			deps = append(deps, Deprecation{Old: e.path, New: r.New + strings.TrimPrefix(e.path, r.Old), Env: e.name})
		}
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
// it was set under, so that the operator finds what they wrote. The
// environment is named first: it overrides the file.
func (c Config) setAs(key string) string {
	for _, d := range c.Deprecations {
		if d.Env != "" && d.New == key {
			return key + " (set as " + d.Env + ")"
		}
	}
	for _, d := range c.Deprecations {
		switch {
		case d.Env != "":
		case d.New == key:
			return key + " (set as " + d.Old + ")"
		case d.Table && strings.HasPrefix(key, d.New+"."):
			return key + " (set as " + d.Old + strings.TrimPrefix(key, d.New) + ")"
		}
	}
	return key
}
