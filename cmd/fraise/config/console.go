package config

// Console configures the console (docs/console.md), which the server serves
// under /console/ behind the ingress.
type Console struct {
	// Disabled turns the console off: /console/ then answers 404 from
	// the server.
	Disabled bool `toml:"disabled"`
	// DevLogin serves the development login, which mints a token for a
	// demo user with the development issuer's key. It is no setting of
	// fraise.toml: `fraise dev` alone turns it on, so no production
	// configuration can.
	DevLogin bool `toml:"-"`
	// DevKeysDir is the development keys' directory (`fraise dev --dir`),
	// where the development issuer's key is read from.
	DevKeysDir string `toml:"-"`
}
