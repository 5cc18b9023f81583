// Command fraise is Fraise's one binary: the core, extauthz, the rate
// limiter, the xDS server, `fraise dev` (all of them behind Envoy) and the tools around
// them, as subcommands. `fraise help` lists them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fraise-dev/fraise/cmd/fraise/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fraise:", err)
		os.Exit(1)
	}
}
