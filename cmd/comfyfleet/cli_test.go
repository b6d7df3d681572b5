package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
)

// cliWorkflow is a text-to-image workflow of the demo's catalogue with a
// LoadImage for --file.
const cliWorkflow = `{
  "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 12, "cfg": 7, "sampler_name": "euler", "scheduler": "normal", "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
  "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
  "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
  "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "placeholder", "clip": ["4", 1]}, "_meta": {"title": "Positive"}},
  "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
  "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
  "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "cli", "images": ["8", 0]}},
  "10": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}}
}`

// onePixelPNG is a valid 1×1 PNG.
var onePixelPNG = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")

// TestCLIAgainstTheDemo runs the client commands of the binary against
// "comfyfleet demo", with the server and an API key from the environment:
// submit --wait shows the node and step as it runs and writes the outputs;
// tasks, instances and files answer, in text and JSON.
func TestCLIAgainstTheDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildBinary(t)
	g, _ := startDemo(t, bin, 2)
	defer g.stop()
	token := g.login()
	apptest.Eventually(t, 15*time.Second, "2 alive instances", func() bool {
		var list []struct{ Alive bool }
		g.do("GET", "/api/instances", token, nil, &list)
		return len(list) == 2 && list[0].Alive && list[1].Alive
	})
	var key struct{ Key string }
	if st := g.do("POST", "/api/keys", token, map[string]any{"name": "cli"}, &key); st != 200 && st != 201 || key.Key == "" {
		t.Fatalf("create an API key: %d %+v", st, key)
	}

	dir := t.TempDir()
	wf, in, outDir := filepath.Join(dir, "workflow.json"), filepath.Join(dir, "input.png"), filepath.Join(dir, "outputs")
	must(t, os.WriteFile(wf, []byte(cliWorkflow), 0o600))
	must(t, os.WriteFile(in, onePixelPNG, 0o600))
	// No config file yet: the server and key come from the environment.
	base := append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir)
	env := append(base, "COMFYFLEET_URL="+g.url, "COMFYFLEET_API_KEY="+key.Key)
	cli := func(args ...string) (string, string, error) {
		c := exec.Command(bin, args...)
		c.Env = env
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		return stdout.String(), stderr.String(), err
	}

	stdout, stderr, err := cli("submit", wf, "--param", "Positive.text=a cat", "--file", in, "--wait", "--out", outDir)
	if err != nil {
		t.Fatalf("submit: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
	}
	if !strings.Contains(stderr, "KSampler #3") || !strings.Contains(stderr, "step 12/12") || !strings.Contains(stderr, "%") {
		t.Errorf("submit --wait showed no node and step progress:\n%q", stderr)
	}
	paths := strings.Fields(stdout)
	if len(paths) == 0 {
		t.Fatalf("submit printed no output paths; stderr: %s", stderr)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) || filepath.Dir(p) != outDir {
			t.Errorf("output %s: %d bytes, %v; want a PNG in %s", p, len(b), err, outDir)
		}
	}
	taskID := strings.Fields(stderr)[1] // "task <id> submitted"

	stdout, _, err = cli("tasks", "ls", "-o", "json")
	var list struct {
		Total int
		Items []struct{ ID, Status string }
	}
	if err != nil || json.Unmarshal([]byte(stdout), &list) != nil || list.Total != 1 || list.Items[0].ID != taskID || list.Items[0].Status != "completed" {
		t.Errorf("tasks ls -o json = %s, %v; want the one completed task %s", stdout, err, taskID)
	}
	var got struct {
		Params map[string]any `json:"params"`
	}
	stdout, _, err = cli("tasks", "get", taskID, "-o", "json")
	if err != nil || json.Unmarshal([]byte(stdout), &got) != nil || got.Params["Positive.text"] != "a cat" || got.Params["10.image"] == nil {
		t.Errorf("tasks get = %s, %v; want the param and the file", stdout, err)
	}
	if _, stderr, err := cli("tasks", "cancel", taskID); err == nil || !strings.Contains(stderr, "409") {
		t.Errorf("cancel of a finished task: %v %s, want a 409", err, stderr)
	}
	if stdout, _, err := cli("instances"); err != nil || strings.Count(stdout, "true") < 2 {
		t.Errorf("instances = %s, %v", stdout, err)
	}
	if stdout, _, err := cli("files", "upload", in, "-o", "json"); err != nil || !strings.Contains(stdout, `"fileId"`) {
		t.Errorf("files upload = %s, %v", stdout, err)
	}
	// A bad key is refused; flags win over the environment.
	if _, stderr, err := cli("tasks", "ls", "--api-key", "cfk_bad"); err == nil || !strings.Contains(stderr, "401") {
		t.Errorf("a bad key: %v %s, want a 401", err, stderr)
	}
	// The config file, without the environment.
	must(t, os.MkdirAll(filepath.Join(dir, "comfyfleet"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "comfyfleet", "cli.yaml"), []byte("url: "+g.url+"\napiKey: "+key.Key+"\n"), 0o600))
	env = base
	if stdout, stderr, err := cli("tasks", "ls"); err != nil || !strings.Contains(stdout, taskID) {
		t.Errorf("tasks ls with the config file = %s %s, %v", stdout, stderr, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
