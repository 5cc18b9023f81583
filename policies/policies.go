// Package policies is the security team's folder: the Rego policy extauthz
// evaluates for every request (authz.rego), its tests (authz_test.rego) and
// the data it reads (data/roles.json, the roles and what each permits). The
// files are compiled into the binary as FS, the policy extauthz serves when
// no policy directory is configured; docs/policies.md documents them.
package policies

import (
	"embed"
	"io/fs"
)

//go:embed *.rego data
var files embed.FS

// FS holds the .rego files and data/ of this folder, rooted at the folder:
// "authz.rego", "data/roles.json", and so on.
var FS fs.FS = files
