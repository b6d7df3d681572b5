package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"

	"github.com/comfyfleet/comfyfleet/client"
)

// The client commands (submit, tasks, instances, files) talk to a running
// gateway through the Go client. The server and credentials come from
// flags, else COMFYFLEET_URL and COMFYFLEET_API_KEY, else the CLI's config
// file (COMFYFLEET_CLI_CONFIG, default ~/.config/comfyfleet/cli.yaml, with
// the keys url and apiKey).

// cliConfig is the CLI's config file.
type cliConfig struct {
	URL    string `yaml:"url"`
	APIKey string `yaml:"apiKey"`
}

// cliFlags are the flags every client command has.
type cliFlags struct {
	url, apiKey, output, config string
	stdout, stderr              io.Writer
}

func (f *cliFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "url", "", "gateway URL (default $COMFYFLEET_URL, then the config file, then http://localhost:3000)")
	fs.StringVar(&f.apiKey, "api-key", "", "API key or token (default $COMFYFLEET_API_KEY, then the config file)")
	fs.StringVar(&f.output, "o", "text", `output: "text" or "json"`)
	fs.StringVar(&f.config, "cli-config", "", "the CLI's config file (default $COMFYFLEET_CLI_CONFIG or ~/.config/comfyfleet/cli.yaml)")
}

// client builds the client from flags, environment and config file.
func (f *cliFlags) client() (*client.Client, error) {
	if f.output != "text" && f.output != "json" {
		return nil, fmt.Errorf(`-o %q: want "text" or "json"`, f.output)
	}
	var file cliConfig
	path := f.config
	if path == "" {
		path = os.Getenv("COMFYFLEET_CLI_CONFIG")
	}
	explicit := path != ""
	if path == "" {
		if dir, err := os.UserConfigDir(); err == nil {
			path = filepath.Join(dir, "comfyfleet", "cli.yaml")
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			if err := yaml.Unmarshal(b, &file); err != nil {
				return nil, fmt.Errorf("config file %s: %w", path, err)
			}
		case explicit || !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("config file: %w", err)
		}
	}
	url := firstSet(f.url, os.Getenv("COMFYFLEET_URL"), file.URL, "http://localhost:3000")
	key := firstSet(f.apiKey, os.Getenv("COMFYFLEET_API_KEY"), file.APIKey)
	return client.New(url, client.WithToken(key))
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ", ") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func (f *cliFlags) json(v any) error {
	enc := json.NewEncoder(f.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// runSubmit is "comfyfleet submit workflow.json [--param K=V] [--file [K=]PATH] [--wait] [--out DIR]".
func runSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := cliFlags{stdout: stdout, stderr: stderr}
	cf.register(fs)
	var params, files multi
	fs.Var(&params, "param", `set an input: "<node id or title>.<input>=<value>" (a JSON value, else a string); repeatable`)
	fs.Var(&files, "file", `upload a file as an input: "<node>.<input>=<path>", or a bare path for the workflow's only LoadImage; repeatable`)
	priority := fs.Int("priority", 0, "priority (higher first)")
	wait := fs.Bool("wait", false, "wait for the task to end, showing its progress")
	out := fs.String("out", "", "with --wait: download the outputs into this directory")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: comfyfleet submit WORKFLOW.json [flags]   (ComfyUI's API format)")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("submit needs one workflow file")
	}
	wf, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	var nodes map[string]struct {
		ClassType string `json:"class_type"`
	}
	if err := json.Unmarshal(wf, &nodes); err != nil {
		return fmt.Errorf("%s: not a workflow in API format: %w", pos[0], err)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	req := &client.TaskRequest{Workflow: wf, Params: map[string]any{}, Priority: *priority}
	for _, p := range params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return fmt.Errorf("--param %q: want <node>.<input>=<value>", p)
		}
		var val any
		if json.Unmarshal([]byte(v), &val) != nil {
			val = v
		}
		req.Params[k] = val
	}
	for _, spec := range files {
		key, path, ok := strings.Cut(spec, "=")
		if !ok {
			path, key = spec, ""
			var loaders []string
			for id, n := range nodes {
				if n.ClassType == "LoadImage" {
					loaders = append(loaders, id)
				}
			}
			if len(loaders) != 1 {
				return fmt.Errorf("--file %s: the workflow has %d LoadImage nodes; name the input: --file <node>.image=%s", path, len(loaders), path)
			}
			key = loaders[0] + ".image"
		}
		fh, err := os.Open(path)
		if err != nil {
			return err
		}
		f, err := c.UploadFile(ctx, filepath.Base(path), fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("upload %s: %w", path, err)
		}
		req.Params[key] = client.FileParam(f.ID)
	}
	t, err := c.SubmitTask(ctx, req)
	if err != nil {
		return err
	}
	if !*wait {
		if cf.output == "json" {
			return cf.json(t)
		}
		fmt.Fprintln(stdout, t.ID)
		return nil
	}
	fmt.Fprintf(stderr, "task %s submitted\n", t.ID)
	bar := &progressLine{w: stderr}
	done, err := c.WaitTask(ctx, t.ID, bar.update)
	bar.end()
	if err != nil {
		return err
	}
	var paths []string
	if done.Status == client.StatusCompleted && *out != "" {
		if paths, err = download(ctx, c, done, *out); err != nil {
			return err
		}
	}
	if cf.output == "json" {
		return cf.json(map[string]any{"task": done, "files": paths})
	}
	if done.Status != client.StatusCompleted {
		if done.Error != nil {
			return fmt.Errorf("task %s %s: %s", done.ID, done.Status, done.Error.Error())
		}
		return fmt.Errorf("task %s %s", done.ID, done.Status)
	}
	if *out == "" && done.Result != nil {
		paths = done.Result.Files
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	return nil
}

// download saves a completed task's outputs into dir and returns their paths.
func download(ctx context.Context, c *client.Client, t *client.Task, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	if t.Result == nil {
		return nil, nil
	}
	ids := make([]string, 0, len(t.Result.Outputs))
	for id := range t.Result.Outputs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		for _, o := range t.Result.Outputs[id] {
			path := filepath.Join(dir, filepath.Base(o.Filename))
			f, err := os.Create(path)
			if err != nil {
				return paths, err
			}
			_, err = c.Download(ctx, o.URL, f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return paths, err
			}
			paths = append(paths, path)
		}
	}
	return paths, nil
}

// progressLine draws one line of progress, redrawn in place: a bar, the
// percentage, the node running and its step.
type progressLine struct {
	w     io.Writer
	drawn bool
}

func (p *progressLine) update(d client.ProgressData) {
	const width = 24
	filled := d.Progress * width / 100
	node := d.ClassType
	if node == "" {
		node = "node"
	}
	if d.NodeID != "" {
		node += " #" + d.NodeID
	}
	if d.Title != "" && d.Title != d.ClassType {
		node += " “" + d.Title + "”"
	}
	step := ""
	if d.Max > 0 {
		step = fmt.Sprintf(" step %d/%d", d.Value, d.Max)
	}
	fmt.Fprintf(p.w, "\r[%s%s] %3d%% %s%s\x1b[K", strings.Repeat("#", filled), strings.Repeat("-", width-filled), d.Progress, node, step)
	p.drawn = true
}

func (p *progressLine) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// runTasks is "comfyfleet tasks ls|get|cancel".
func runTasks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: comfyfleet tasks ls [--status S] [--limit N] | get ID | cancel ID")
	}
	fs := flag.NewFlagSet("tasks "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := cliFlags{stdout: stdout, stderr: stderr}
	cf.register(fs)
	status := fs.String("status", "", "with ls: only these statuses, comma-separated")
	limit := fs.Int("limit", 20, "with ls: at most this many (up to 100)")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	switch args[0] {
	case "ls", "list":
		o := client.ListTasksOptions{Limit: *limit}
		if *status != "" {
			o.Statuses = strings.Split(*status, ",")
		}
		list, err := c.ListTasks(ctx, o)
		if err != nil {
			return err
		}
		if cf.output == "json" {
			return cf.json(list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tPROGRESS\tINSTANCE\tCREATED")
		for _, t := range list.Items {
			fmt.Fprintf(tw, "%s\t%s\t%d%%\t%s\t%s\n", t.ID, t.Status, t.Progress, t.InstanceID, t.CreatedAt)
		}
		fmt.Fprintf(tw, "(%d of %d)\n", len(list.Items), list.Total)
		return tw.Flush()
	case "get", "cancel":
		if len(pos) != 1 {
			return fmt.Errorf("tasks %s needs a task id", args[0])
		}
		var t *client.Task
		if args[0] == "get" {
			t, err = c.GetTask(ctx, pos[0])
		} else {
			t, err = c.CancelTask(ctx, pos[0])
		}
		if err != nil {
			return err
		}
		if cf.output == "json" {
			return cf.json(t)
		}
		fmt.Fprintf(stdout, "%s\t%s\t%d%%\n", t.ID, t.Status, t.Progress)
		if t.Error != nil {
			fmt.Fprintf(stdout, "error: %s\n", t.Error.Error())
		}
		if t.Result != nil {
			for _, f := range t.Result.Files {
				fmt.Fprintln(stdout, f)
			}
		}
		return nil
	}
	return fmt.Errorf("unknown tasks command %q: want ls, get or cancel", args[0])
}

// runInstances is "comfyfleet instances".
func runInstances(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("instances", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := cliFlags{stdout: stdout, stderr: stderr}
	cf.register(fs)
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	list, err := c.ListInstances(ctx)
	if err != nil {
		return err
	}
	if cf.output == "json" {
		return cf.json(list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tALIVE\tBUSY\tENABLED\tTASK")
	for _, in := range list {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%v\t%s\n", in.ID, in.Name, in.Alive, in.Busy, in.Enabled, in.CurrentTaskID)
	}
	return tw.Flush()
}

// runFiles is "comfyfleet files upload PATH...".
func runFiles(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "upload" {
		return errors.New("usage: comfyfleet files upload PATH [PATH]")
	}
	fs := flag.NewFlagSet("files upload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := cliFlags{stdout: stdout, stderr: stderr}
	cf.register(fs)
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New("files upload needs a file")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var out []*client.File
	for _, p := range pos {
		fh, err := os.Open(p)
		if err != nil {
			return err
		}
		f, err := c.UploadFile(ctx, filepath.Base(p), fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("upload %s: %w", p, err)
		}
		out = append(out, f)
	}
	if cf.output == "json" {
		return cf.json(out)
	}
	for _, f := range out {
		fmt.Fprintf(stdout, "%s\t%s\t%d bytes\n", f.ID, f.Filename, f.Size)
	}
	return nil
}
