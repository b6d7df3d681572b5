package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// runSim is "comfyfleet sim": simulated ComfyUI instances (v0.3.65
// behaviour, see package comfysim) on the given ports, in one process,
// until ctx ends.
func runSim(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1", "IP address to listen on")
	ports := fs.String("ports", "8001-8008", `ports, as "8001-8008", "8001,8005" or "0" for one free port`)
	var opts comfysim.Options
	fs.DurationVar(&opts.NodeDelay, "node-delay", 0, "duration of each executed node")
	fs.IntVar(&opts.Steps, "steps", 0, "progress steps of sampler nodes (0: the workflow's steps input)")
	fs.DurationVar(&opts.StepDelay, "step-delay", 0, "duration of each sampler progress step")
	fs.StringVar(&opts.PreviewMethod, "preview-method", "none", `sampler previews, as ComfyUI's --preview-method: "none", or "auto" for a JPEG with each step`)
	fs.DurationVar(&opts.ModelLoadDelay, "model-load-delay", 0, "time to load a checkpoint other than the one loaded last")
	checkpoints := fs.String("checkpoints", strings.Join(comfysim.DefaultCheckpoints, ","), "checkpoint names the instances offer, comma-separated")
	fs.BoolVar(&opts.RequireUUIDPromptID, "require-uuid-prompt-id", false, "reject a client prompt_id that is not a canonical UUID (ComfyUI >= 0.25)")
	fs.IntVar(&opts.MaxImageSide, "max-image-side", 2048, "largest width or height of a written image")
	fs.BoolVar(&opts.DisableMetadata, "disable-metadata", false, "do not embed the prompt in saved PNGs")
	fs.IntVar(&opts.OutputSize, "output-size", 0, "pad every saved PNG to this many bytes with incompressible bytes, so outputs weigh what real images do (about 1500000 for 1024x1024)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("sim: unexpected argument %q", fs.Arg(0))
	}
	list, err := parsePorts(*ports)
	if err != nil {
		return fmt.Errorf("sim: --ports: %w", err)
	}
	opts.Checkpoints = splitList(*checkpoints)
	opts.Log = comfysim.NewLog()
	sims, err := startSims(*listen, list, opts)
	if err != nil {
		return err
	}
	<-ctx.Done()
	for _, s := range sims {
		s.Close()
	}
	return nil
}

// startSims starts one instance per port; on failure the started ones are closed.
func startSims(ip string, ports []int, opts comfysim.Options) ([]*comfysim.Sim, error) {
	log := newLogger()
	sims := make([]*comfysim.Sim, 0, len(ports))
	for _, port := range ports {
		s := comfysim.New(opts)
		if err := s.Start(net.JoinHostPort(ip, strconv.Itoa(port))); err != nil {
			for _, started := range sims {
				started.Close()
			}
			return nil, fmt.Errorf("sim: %w", err)
		}
		log.Info("simulated ComfyUI listening", "url", s.URL())
		sims = append(sims, s)
	}
	return sims, nil
}

// parsePorts reads "8001-8008", "8001,8003" or a mix of both (the config's
// syntax), or "0" for one free port.
func parsePorts(spec string) ([]int, error) {
	if strings.TrimSpace(spec) == "0" {
		return []int{0}, nil
	}
	return config.ParsePorts(spec)
}

func splitList(s string) []string {
	out := []string{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
