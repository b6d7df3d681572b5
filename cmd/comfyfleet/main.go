// Command comfyfleet is the ComfyFleet gateway: one front door for a fleet
// of ComfyUI servers.
//
//	comfyfleet serve --config comfyfleet.yaml   run the gateway
//	comfyfleet demo                             gateway + simulated instances, nothing else needed
//	comfyfleet sim --ports 8001-8008            simulated ComfyUI instances only
//	comfyfleet bench all                        benchmarks: gateway + simulated fleet, one table each
//	comfyfleet bench overhead --comfy URL       the gateway's overhead against real ComfyUI servers
//	comfyfleet hash-password                    print a bcrypt hash for the config
//	comfyfleet config reset --data DIR          delete the runtime config saved by PUT /api/config
//	comfyfleet backup --out FILE                a consistent SQLite snapshot while serving
//	comfyfleet healthcheck [--ready]            probe the local gateway (the image's HEALTHCHECK)
//	comfyfleet version                          print the version and build info
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/buildinfo"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/logging"
)

const usage = `comfyfleet: one front door for a fleet of ComfyUI servers

Usage:
  comfyfleet serve [--config FILE] [--listen ADDR] [--set key=value ...]
  comfyfleet demo  [--listen ADDR] [--instances N] [--data DIR]
  comfyfleet sim   [--listen IP] [--ports 8001-8008]
  comfyfleet bench <scenario|all> [--quick] [--store sqlite|redis] [flags]
  comfyfleet bench overhead [--comfy http://host:port ...] [--overhead-rounds N]
  comfyfleet hash-password   (reads the password from stdin)
  comfyfleet config reset [--config FILE] [--data DIR] [--set key=value ...]
                            delete the runtime config saved by PUT /api/config
                            (run it with the gateway stopped)
  comfyfleet backup --out FILE [--config FILE] [--data DIR]
                            a consistent snapshot of the SQLite store, taken while
                            the gateway serves (docs/deploy.md: restore)
  comfyfleet healthcheck [--ready] [--config FILE] [--url URL]
                            exit 0 when the local gateway's /livez (/readyz) answers 200
  comfyfleet version         print the version and build info (also --version)

Client commands (server and key from --url/--api-key, $COMFYFLEET_URL/$COMFYFLEET_API_KEY,
or ~/.config/comfyfleet/cli.yaml with url: and apiKey:; -o json for scripts):
  comfyfleet submit workflow.json [--param 'Positive.text=a cat'] [--file input.png]
                             [--wait] [--out ./outputs]
  comfyfleet tasks ls [--status S] | get ID | cancel ID
  comfyfleet instances
  comfyfleet files upload PATH...

Run "comfyfleet <command> -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The first signal starts a graceful shutdown (serve drains within
	// server.shutdownGrace); a second one ends the process at once.
	context.AfterFunc(ctx, stop)
	if err := run(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "comfyfleet:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:])
	case "demo":
		return runDemo(ctx, args[1:])
	case "sim":
		return runSim(ctx, args[1:])
	case "bench":
		return runBench(ctx, args[1:])
	case "hash-password":
		return runHashPassword(args[1:])
	case "config":
		return runConfig(ctx, args[1:])
	case "healthcheck":
		return runHealthcheck(ctx, args[1:])
	case "backup":
		return runBackup(ctx, args[1:])
	case "submit":
		return runSubmit(ctx, args[1:], os.Stdout, os.Stderr)
	case "tasks":
		return runTasks(ctx, args[1:], os.Stdout, os.Stderr)
	case "instances":
		return runInstances(ctx, args[1:], os.Stdout, os.Stderr)
	case "files":
		return runFiles(ctx, args[1:], os.Stdout, os.Stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(os.Stdout, buildinfo.Get())
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// newLogger is the text logger of the commands that read no config (sim,
// demo); COMFYFLEET_LOG_LEVEL sets its level as it sets serve's log.level.
func newLogger() *slog.Logger {
	log, err := logging.New(os.Stderr, logging.FormatText, os.Getenv("COMFYFLEET_LOG_LEVEL"))
	if err != nil {
		log, _ = logging.New(os.Stderr, logging.FormatText, "info")
		log.Warn("COMFYFLEET_LOG_LEVEL ignored", "err", err)
	}
	return log
}

// configLogger is serve's logger, from the log section of its config. The
// Redis client's own messages go through it too (the client's logger is
// one per process).
func configLogger(cfg config.Config) (*slog.Logger, error) {
	log, err := logging.New(os.Stderr, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return nil, err
	}
	redis.SetLogger(logging.Redis{Log: log})
	return log, nil
}
