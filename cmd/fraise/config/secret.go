package config

import (
	"fmt"
	"os"
	"strings"
)

// IsReference reports whether v is a secret reference rather than a literal.
func IsReference(v string) bool {
	for _, p := range []string{"file://", "env://", "vault://"} {
		if strings.HasPrefix(v, p) {
			return true
		}
	}
	return false
}

// FilePath returns the path a file:// reference names (file:///abs or
// file://relative), and whether v is one: the references Fraise re-reads
// as they change.
func FilePath(v string) (string, bool) { return strings.CutPrefix(v, "file://") }

// Resolve returns the value a configuration string stands for: the contents
// of file:///path (or file://relative/path), the variable of env://NAME, or
// v itself when it is not a reference. vault:// references need a Vault
// client this build does not include, and say so rather than pass through.
func Resolve(v string, getenv func(string) string) (string, error) {
	switch {
	case strings.HasPrefix(v, "file://"):
		path, _ := FilePath(v)
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("secret %s: %w", v, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case strings.HasPrefix(v, "env://"):
		name := strings.TrimPrefix(v, "env://")
		s := getenv(name)
		if s == "" {
			return "", fmt.Errorf("secret %s: environment variable %s is empty or unset", v, name)
		}
		return s, nil
	case strings.HasPrefix(v, "vault://"):
		return "", fmt.Errorf("secret %s: vault:// references are not supported by this build; use file:// (e.g. a Vault Agent template) or env://", v)
	}
	return v, nil
}
