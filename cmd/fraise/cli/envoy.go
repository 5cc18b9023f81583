package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fraise-dev/fraise/envoy"
)

func runEnvoy(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || args[0] != "bootstrap" {
		return errors.New("usage: fraise envoy bootstrap [--config fraise.toml] [--out FILE]")
	}
	fs, cfgPath := flags("envoy bootstrap", env)
	out := fs.String("out", "-", "output file, - for standard output")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, _, err := loadConfig(*cfgPath, env)
	if err != nil {
		return err
	}
	res, err := envoy.Build(envoyOptions(cfg))
	if err != nil {
		return err
	}
	if err := res.Validate(); err != nil {
		return err
	}
	b, err := res.Bootstrap()
	if err != nil {
		return err
	}
	y, err := envoy.BootstrapYAML(b)
	if err != nil {
		return err
	}
	if *out == "-" {
		_, err = env.Stdout.Write(y)
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*out, y, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s\n", *out)
	return nil
}
