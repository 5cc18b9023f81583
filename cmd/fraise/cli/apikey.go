package cli

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/extauthz/apikey"
)

const apikeyUsage = `usage:
  fraise apikey create --tenant UUID --roles viewer[,..] [--scopes s[,..]] [--name label] [--ttl 2160h] [--created-by who]
  fraise apikey list [--tenant UUID]
  fraise apikey revoke ID`

// runAPIKey manages API keys as the schema owner (database.admin_url):
// create prints the key once, and only its hash is stored; list shows
// what is stored, never a secret; revoke takes effect in extauthz within
// authz.api_key_cache_ttl.
func runAPIKey(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 {
		return errors.New(apikeyUsage)
	}
	sub := args[0]
	fs, cfgPath := flags("apikey "+sub, env)
	tenant := fs.String("tenant", "", "tenant id (UUID)")
	var roles, scopes, name, createdBy *string
	var ttl *time.Duration
	if sub == "create" {
		roles = fs.String("roles", "", "comma-separated roles")
		scopes = fs.String("scopes", "", "comma-separated scopes")
		name = fs.String("name", "", "a label for people")
		ttl = fs.Duration("ttl", apikey.DefaultTTL, "lifetime")
		createdBy = fs.String("created-by", "", "who creates the key (default: the OS user)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, _, err := loadConfig(*cfgPath, env)
	if err != nil {
		return err
	}
	url, err := resolveAdminURL(cfg.Database, env.Getenv)
	if err != nil {
		return err
	}
	db, err := postgres.Open(ctx, url, postgres.Options{MaxConns: 1})
	if err != nil {
		return err
	}
	defer db.Close()
	store := postgres.NewAPIKeys(db)

	switch sub {
	case "create":
		if *tenant == "" || *roles == "" {
			return errors.New("apikey create: --tenant and --roles are required")
		}
		who := *createdBy
		if who == "" {
			if u, err := user.Current(); err == nil {
				who = u.Username
			} else {
				who = "unknown"
			}
		}
		k, raw, err := apikey.Generate(apikey.NewKey{
			Tenant: *tenant, Name: *name, CreatedBy: who, Roles: splitList(*roles), Scopes: splitList(*scopes), TTL: *ttl,
		}, time.Now(), nil)
		if err != nil {
			return err
		}
		if err := store.Create(ctx, k); err != nil {
			return fmt.Errorf("apikey create: %w", err)
		}
		fmt.Fprintf(env.Stderr, "API key %s for tenant %s, expires %s. It is shown once; store it now.\n",
			k.ID, k.Tenant, k.ExpiresAt.Format(time.RFC3339))
		fmt.Fprintln(env.Stdout, raw)
		return nil
	case "list":
		keys, err := store.List(ctx, *tenant)
		if err != nil {
			return fmt.Errorf("apikey list: %w", err)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTENANT\tNAME\tROLES\tSCOPES\tCREATED BY\tCREATED\tEXPIRES\tLAST USED\tSTATUS")
		now := time.Now()
		for _, k := range keys {
			state := "active"
			switch {
			case !k.RevokedAt.IsZero():
				state = "revoked " + k.RevokedAt.UTC().Format(time.RFC3339)
			case !now.Before(k.ExpiresAt):
				state = "expired"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Tenant, or(k.Name, "-"),
				strings.Join(k.Roles, ","), or(strings.Join(k.Scopes, " "), "-"), k.CreatedBy,
				k.CreatedAt.UTC().Format(time.RFC3339), k.ExpiresAt.UTC().Format(time.RFC3339), when(k.LastUsedAt), state)
		}
		return tw.Flush()
	case "revoke":
		if fs.NArg() != 1 {
			return errors.New("apikey revoke: want one key id")
		}
		id := fs.Arg(0)
		if i, _, err := apikey.Parse(id); err == nil {
			id = i // a whole key was pasted: revoke it by its id
		}
		if err := store.Revoke(ctx, id, time.Now()); err != nil {
			return fmt.Errorf("apikey revoke %s: %w", id, err)
		}
		fmt.Fprintf(env.Stdout, "revoked %s (extauthz refuses it within authz.api_key_cache_ttl, %s)\n", id, cfg.Authz.APIKeyCacheTTL.Duration)
		return nil
	}
	return errors.New(apikeyUsage)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
