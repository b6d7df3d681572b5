package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/comfyfleet/comfyfleet/internal/bench"
)

// runBench is "comfyfleet bench <scenario|all> [flags]": it starts the
// gateway (this binary, as a child process) and simulated instances (or,
// for overhead, uses the --comfy servers), runs the scenarios and prints a
// table for each.
func runBench(ctx context.Context, args []string) error {
	o, names, err := benchFlags(args)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: find own binary: %w", err)
	}
	o.Gateway = []string{exe}
	_, err = bench.Run(ctx, o, names)
	return err
}

// benchFlags parses the bench command line into options and scenario names.
func benchFlags(args []string) (bench.Options, []string, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o bench.Options
	fs.StringVar(&o.Store, "store", "sqlite", "gateway store for every scenario but throughput (which runs both): sqlite or redis")
	fs.StringVar(&o.RedisURL, "redis-url", bench.DefaultRedisURL, "Redis server; each run uses a key prefix of its own, deleted afterwards")
	fs.BoolVar(&o.Quick, "quick", false, "small sizes: the whole suite in a couple of minutes")
	fs.StringVar(&o.ProfileDir, "cpuprofile", "", "directory for CPU profiles of the gateway, one per measured window (from its metrics listener)")
	fs.DurationVar(&o.ProfileTime, "profile-time", 0, "length of each CPU profile (default 10s)")
	fs.Func("gateway-set", "key=value setting for every gateway started, as serve's --set (scheduler.prefetch=0, say); repeat for several", func(s string) error {
		if !strings.Contains(s, "=") {
			return fmt.Errorf("want key=value, got %q", s)
		}
		o.GatewaySets = append(o.GatewaySets, s)
		return nil
	})
	sz := &o.Sizes
	fs.IntVar(&sz.Clients, "clients", 0, "concurrent submitting clients (default 32)")
	fs.IntVar(&sz.ThroughputTasks, "throughput-tasks", 0, "throughput: tasks per store (default 20000; quick 600)")
	fs.IntVar(&sz.ThroughputInstances, "throughput-instances", 0, "throughput: instances (default 64)")
	fs.IntVar(&sz.GapTasks, "gap-tasks", 0, "gap: tasks queued (default 2000; quick 200)")
	fs.IntVar(&sz.GapInstances, "gap-instances", 0, "gap: instances (default 8)")
	fs.DurationVar(&sz.GapTaskTime, "gap-task-time", 0, "gap: duration of one task (default 50ms; quick 20ms)")
	fs.IntVar(&sz.EfficiencyTasks, "efficiency-tasks", 0, "efficiency: tasks (default 5000; quick 300)")
	fs.IntVar(&sz.EfficiencyInstances, "efficiency-instances", 0, "efficiency: instances (default 32; quick 16)")
	fs.DurationVar(&sz.EfficiencyStep, "efficiency-step", 0, "efficiency: duration of one sampler step (default 20ms; quick 4ms)")
	fs.IntVar(&sz.PlacementTasks, "placement-tasks", 0, "placement: tasks (default 400; quick 60)")
	fs.IntVar(&sz.PlacementInstances, "placement-instances", 0, "placement: instances (default 8; quick 4)")
	fs.IntVar(&sz.PlacementCheckpoints, "placement-checkpoints", 0, "placement: distinct checkpoints (default 4)")
	fs.DurationVar(&sz.ModelLoad, "model-load", 0, "placement: checkpoint load time (default 1s; quick 100ms)")
	fs.IntVar(&sz.MixedTasks, "mixed-tasks", 0, "mixed: tasks, half of them SDXL (default 400; quick 60)")
	fs.IntVar(&sz.MixedInstances, "mixed-instances", 0, "mixed: instances, half of them with SDXL (default 8; quick 4)")
	fs.DurationVar(&sz.MixedStep, "mixed-step", 0, "mixed: duration of one sampler step (default 20ms; quick 4ms)")
	fs.IntVar(&sz.ScaleTasks, "scale-tasks", 0, "scale: pending tasks (default 1000000; quick 20000)")
	fs.IntVar(&sz.ScaleInstances, "scale-instances", 0, "scale: health-checked instances (default 1000; quick 100)")
	fs.DurationVar(&sz.ScaleWindow, "scale-window", 0, "scale: CPU sampling window (default 20s; quick 3s)")
	fs.IntVar(&sz.FanoutClients, "fanout-clients", 0, "fanout: /ws clients (default 2000; quick 200)")
	fs.IntVar(&sz.FanoutUsers, "fanout-users", 0, "fanout: users the clients belong to, client c being user c mod N (default: one user per client)")
	fs.IntVar(&sz.FanoutRate, "fanout-rate", 0, "fanout: tasks per second (default 200; quick 50)")
	fs.DurationVar(&sz.FanoutDuration, "fanout-duration", 0, "fanout: submitting time (default 30s; quick 4s)")
	fs.IntVar(&sz.OverheadTasks, "overhead-tasks", 0, "overhead: jobs one at a time per path, spread over the rounds (default 2000; quick 100)")
	fs.IntVar(&sz.OverheadRounds, "overhead-rounds", 0, "overhead: rounds, each running every path (default 3)")
	fs.IntVar(&sz.OverheadBurst, "overhead-burst", 0, "overhead: jobs submitted at once per path and round (default 300; quick 50)")
	fs.Func("comfy", "overhead: base URL http://host:port of a real ComfyUI server instead of the simulator; repeat for several", func(s string) error {
		o.Comfy = append(o.Comfy, s)
		return nil
	})
	fs.StringVar(&o.ComfyOutputDir, "comfy-output-dir", "", "overhead: the --comfy servers' output folder on this machine, {port} for each one's port; the gateway reads outputs there instead of over /view")
	fs.IntVar(&sz.StorageTasks, "storage-tasks", 0, "storage: jobs one at a time per file store, spread over the rounds (default 600; quick 30)")
	fs.IntVar(&sz.StorageRounds, "storage-rounds", 0, "storage: rounds, each running every file store (default 6; quick 2)")
	fs.IntVar(&sz.StorageBurst, "storage-burst", 0, "storage: jobs submitted at once per file store and round (default 100; quick 20)")
	fs.IntVar(&sz.StorageInstances, "storage-instances", 0, "storage: simulated instances behind each gateway (default 4; quick 2)")
	fs.IntVar(&sz.StorageDownloads, "storage-downloads", 0, "storage: files downloaded one at a time per way of serving them and round (default 50; quick 10)")
	fs.IntVar(&sz.StorageImageSide, "storage-image-side", 0, "storage: width and height of the output images (default 1024)")
	fs.IntVar(&sz.StorageOutputSize, "storage-output-size", 0, "storage: bytes of one output PNG, padded with incompressible bytes (default 1500000)")
	fs.StringVar(&o.SeaweedFSBin, "seaweedfs-bin", "", "storage: SeaweedFS weed binary to start as the S3 server (default $TEST_SEAWEEDFS_BIN, else weed on the PATH)")
	fs.StringVar(&o.S3Endpoint, "s3-endpoint", "", "storage: an existing S3 service, http(s)://host:port, instead of starting SeaweedFS; credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or ~/.aws/credentials")
	fs.StringVar(&o.S3Bucket, "s3-bucket", "", "storage: the existing bucket of --s3-endpoint; the run's objects go under comfyfleet-bench/ and are deleted at the end")
	fs.StringVar(&o.S3Region, "s3-region", "", "storage: the region of --s3-endpoint (default us-east-1)")
	fs.Float64Var(&o.QuietBelow, "overhead-quiet", 0, "overhead, storage: hold each round until the machine's other processes use fewer cores than this over a second (default 0: do not wait)")
	fs.DurationVar(&o.QuietWait, "overhead-quiet-wait", 0, "overhead, storage: longest wait of a round for --overhead-quiet, after which it starts anyway (default 2m)")
	fs.Func("comfy-pid", "overhead: pid of a ComfyUI server process whose CPU to read; repeat for several (default: found by the --comfy ports on this machine)", func(s string) error {
		pid, err := strconv.Atoi(s)
		if err != nil || pid <= 0 {
			return fmt.Errorf("not a process id: %q", s)
		}
		o.ComfyPIDs = append(o.ComfyPIDs, pid)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: comfyfleet bench <scenario|all> [flags]\n\nScenarios:\n")
		for _, s := range bench.Scenarios() {
			fmt.Fprintf(fs.Output(), "  %-11s %s\n", s.Name, s.Summary)
		}
		fmt.Fprintf(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	names, err := parseInterleaved(fs, args)
	if err != nil {
		return o, nil, err
	}
	if len(names) == 0 {
		fs.Usage()
		return o, nil, errors.New("bench: name a scenario, or all")
	}
	return o, names, nil
}

// parseInterleaved parses flags that may come before, between or after the
// scenario names, and returns the names.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var names []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			names = append(names, args[0])
			args = args[1:]
		}
		if len(args) == 0 {
			return names, nil
		}
	}
}
