package core

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// The parts of the secret-URL rule. They are written to mean the same in
// RE2 and in PostgreSQL's regular expressions, since migration 0010's
// fraise.action_url_secret and fraise.redact_action_url apply the same
// rule to what the rule API shows (adapters/postgres holds the two to each
// other).
var (
	urlScheme       = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)
	credentialWords = regexp.MustCompile(`(?i)(token|key|secret|sig|pass|pwd|auth|code|cred|session|%)`)
	longSegment     = regexp.MustCompile(`/[^/]{24,}`)
)

// longSegmentRunes is the length from which a path segment is taken for a
// token.
const longSegmentRunes = 24

// splitActionURL cuts raw into its scheme ("https://"), authority (up to
// the first /, ? or #), path (up to the first ? or #) and the rest (query
// and fragment); ok is false when raw does not start with a scheme.
func splitActionURL(raw string) (scheme, authority, path, rest string, ok bool) {
	scheme = urlScheme.FindString(raw)
	if scheme == "" {
		return "", "", "", "", false
	}
	after := raw[len(scheme):]
	i := strings.IndexAny(after, "/?#")
	if i < 0 {
		return scheme, after, "", "", true
	}
	authority, after = after[:i], after[i:]
	j := strings.IndexAny(after, "?#")
	if j < 0 {
		return scheme, authority, after, "", true
	}
	return scheme, authority, after[:j], after[j:], true
}

// ActionURLSecret reports whether the URL of an action of kind is itself a
// credential, never to be shown, logged or returned: every Slack URL; any
// URL that is not scheme://...; a URL with userinfo; one whose query or
// fragment mentions a credential (token, key, secret, sig, pass, pwd, auth,
// code, cred, session, in any case) or holds a percent-encoding (which
// could hide such a name); and one with a path segment of 24 characters or
// more (a token in the path, as Discord's or Teams' webhooks have). The
// rule errs on the side of hiding.
func ActionURLSecret(kind, raw string) bool {
	if kind == ActionSlack {
		return true
	}
	_, authority, path, rest, ok := splitActionURL(raw)
	return !ok || strings.Contains(authority, "@") || credentialWords.MatchString(rest) || longSegment.MatchString(path)
}

// RedactActionURL returns what may be shown of the URL of an action of
// kind: the URL itself when it is not a secret one (ActionURLSecret); else
// its scheme and host (userinfo removed), the first path segment when it is
// shorter than 24 characters, and /***, e.g.
// https://hooks.slack.com/services/***. A URL without a scheme is ***.
func RedactActionURL(kind, raw string) string {
	if !ActionURLSecret(kind, raw) {
		return raw
	}
	scheme, authority, path, _, ok := splitActionURL(raw)
	if !ok {
		return "***"
	}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		authority = authority[i+1:]
	}
	out := scheme + authority
	if seg, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/"); strings.HasPrefix(path, "/") && seg != "" &&
		utf8.RuneCountInString(seg) < longSegmentRunes {
		out += "/" + seg
	}
	return out + "/***"
}

// RedactActionText returns text (an error, a dead-letter reason) with the
// secret parts of action a's URL replaced by their redacted form: the URL
// itself, what follows its host, and its userinfo. Every log line and
// dead-letter reason about an action goes through it, so a notifier that
// quotes its target cannot leak it.
func RedactActionText(text string, a Action) string {
	if a.URL == "" || !ActionURLSecret(a.Kind, a.URL) {
		return text
	}
	red := RedactActionURL(a.Kind, a.URL)
	text = strings.ReplaceAll(text, a.URL, red)
	_, authority, path, rest, ok := splitActionURL(a.URL)
	if !ok {
		return text
	}
	// Parts quoted on their own (a client library that strips the
	// password, a message that names the path only). The longest first, so
	// a shorter part does not break up a longer one.
	if tail := path + rest; len(tail) > 1 {
		text = strings.ReplaceAll(text, tail, "/***")
	}
	if rest != "" {
		text = strings.ReplaceAll(text, rest, "?***")
	}
	if i := strings.LastIndex(authority, "@"); i > 0 {
		text = strings.ReplaceAll(text, authority[:i+1], "***@")
	}
	// A path segment long enough to be a token, wherever it turns up.
	for _, seg := range strings.Split(path, "/") {
		if utf8.RuneCountInString(seg) >= longSegmentRunes {
			text = strings.ReplaceAll(text, seg, "***")
		}
	}
	return text
}
