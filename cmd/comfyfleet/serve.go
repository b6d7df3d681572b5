package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app"
	"github.com/comfyfleet/comfyfleet/internal/auth"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/web"
)

// setFlags collects repeated --set key=value flags.
type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, ",") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

// runServe is "comfyfleet serve": defaults < config file < COMFYFLEET_*
// environment < flags.
func runServe(ctx context.Context, args []string) error {
	cfg, err := loadConfig("serve", args)
	if err != nil {
		return err
	}
	return serve(ctx, cfg)
}

// loadConfig parses the flags of serve (and of the commands that must
// find the same store) and returns the validated start-up config.
func loadConfig(name string, args []string) (config.Config, error) {
	return loadConfigWith(name, args, nil)
}

// loadConfigWith is loadConfig for a command with flags of its own, which
// extra adds to the flag set.
func loadConfigWith(name string, args []string, extra func(*flag.FlagSet)) (config.Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	if extra != nil {
		extra(fs)
	}
	path := fs.String("config", os.Getenv("COMFYFLEET_CONFIG"), "YAML config file, see config.example.yaml (default $COMFYFLEET_CONFIG)")
	listen := fs.String("listen", "", "listen address, e.g. :3000 (overrides server.listen)")
	data := fs.String("data", "", "data directory (overrides dataDir)")
	var sets setFlags
	fs.Var(&sets, "set", "override any config key, e.g. --set healthCheck.interval=5000 (repeatable)")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	if fs.NArg() > 0 {
		return config.Config{}, fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	cfg, err := config.Load(*path, os.Environ())
	if err != nil {
		return config.Config{}, err
	}
	if *listen != "" {
		sets = append(sets, "server.listen="+*listen)
	}
	if *data != "" {
		sets = append(sets, "dataDir="+*data)
	}
	if err := applySets(&cfg, sets); err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}

// runConfig is "comfyfleet config reset": delete the runtime config saved
// by PUT /api/config, offline, in the store the gateway uses.
func runConfig(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "reset" {
		return errors.New(`config: want "comfyfleet config reset [--config FILE] [--data DIR] [--set key=value ...]"`)
	}
	cfg, err := loadConfig("config reset", args[1:])
	if err != nil {
		return err
	}
	where, err := app.ResetRuntimeConfig(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("Deleted the runtime config saved by PUT /api/config in %s.\n"+
		"The gateway starts from the config file, environment and flags again.\n", where)
	return nil
}

func applySets(cfg *config.Config, sets []string) error {
	for _, kv := range sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("--set %q: want key=value", kv)
		}
		if env, secret := config.SecretSetting(k, v); secret {
			return fmt.Errorf("--set %s: a secret on the command line is readable by every local user (ps, /proc); "+
				"set %s in the gateway's environment, or %s in a config file only the gateway can read "+
				"(see docs/security.md)", k, env, k)
		}
		if err := cfg.Set(k, v); err != nil {
			return err
		}
	}
	cfg.WithDefaults()
	return cfg.Validate()
}

// serve builds and runs the gateway until ctx ends, then gives its
// shutdown server.shutdownGrace: a shutdown that takes longer (a component
// that does not stop) ends the process anyway, with an error. Nothing is
// lost that way: the store holds every task, and the next start (or
// another replica) reattaches what was left, as after a kill.
func serve(ctx context.Context, cfg config.Config) error {
	log, err := configLogger(cfg)
	if err != nil {
		return err
	}
	a, err := app.New(ctx, cfg, app.Options{Logger: log, Out: os.Stdout, UI: web.Handler()})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	grace := a.ShutdownGrace()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return fmt.Errorf("shutdown took longer than server.shutdownGrace (%s); exiting anyway", grace)
	}
}

// runHashPassword prints the bcrypt hash of a password read from stdin.
func runHashPassword(args []string) error {
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprint(os.Stderr, "password: ")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("read password: %w", err)
	}
	hash, err := auth.HashPassword(strings.TrimRight(line, "\r\n"))
	if err != nil {
		return err
	}
	fmt.Println(hash)
	return nil
}
