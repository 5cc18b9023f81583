package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/fraise-dev/fraise/cmd/fraise/config"

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

// lookEnvoy returns the path of the Envoy binary named in the configuration
// when it is on PATH, and "" otherwise (then the development gateway runs).
func lookEnvoy(name string) string {
	if name == "" {
		return ""
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	return p
}

// runEnvoyProcess writes the static bootstrap and runs Envoy on it until ctx
// ends: the production data plane on the very configuration the
// development gateway would have executed.
func runEnvoyProcess(ctx context.Context, cfg config.Config, bin, dir string, env Env) error {
	res, err := envoy.Build(envoyOptions(cfg))
	if err != nil {
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
	path := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(path, y, 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "-c", path, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = env.Stdout, env.Stderr
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("envoy: %w", err)
	}
	return nil
}
