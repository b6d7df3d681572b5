package app_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// taskPrefix is the filename_prefix "renders/../cat" becomes: the task's
// folder on its instance, then the prefix cleaned.
var taskPrefix = regexp.MustCompile(`^(comfyfleet/[0-9a-f]{32})/renders/cat$`)

// TestTaskFilesUnderUnguessableFolder: a task's uploads and outputs live in
// a folder of its own on the instance whose name is not its id (which other
// users may learn), and the outputs come back under the names ComfyUI gave.
func TestTaskFilesUnderUnguessableFolder(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	alice := e.Login(apptest.User, apptest.UserPass)
	waitAlive(e, alice)

	fileID := upload(e, alice, "in.png", pngBytes(t))
	wf := loadAndSave("placeholder.png")
	wf["3"] = node("SaveImage", map[string]any{"images": link("2", 0), "filename_prefix": "renders/../cat"})
	v := submit(e, alice, map[string]any{"workflow": wf, "params": map[string]any{"1.image": map[string]string{"fileId": fileID}}})
	done := waitStatus(e, alice, v.ID, "completed", 10*time.Second)

	prompt := receivedPrompt(t, e.Sims[0], v.ID)
	image, _ := prompt["1"].Inputs["image"].(string)
	prefix, _ := prompt["3"].Inputs["filename_prefix"].(string)
	m := taskPrefix.FindStringSubmatch(prefix)
	if m == nil || strings.Contains(prefix, v.ID) {
		t.Fatalf("filename_prefix = %q, want comfyfleet/<32 hex digits, not the task id>/renders/cat", prefix)
	}
	folder := m[1]
	if want := folder + "/in.png"; image != want {
		t.Errorf("LoadImage.image = %q, want %q (uploaded to the task's folder)", image, want)
	}

	outs := simOutputs(t, e.Sims[0], v.ID)
	if len(outs) != 1 || outs[0].Subfolder != folder+"/renders" || outs[0].Filename != "cat_00001_.png" {
		t.Fatalf("ComfyUI reported outputs %+v, want cat_00001_.png in %s/renders", outs, folder)
	}
	if got := done.Result.Outputs["3"]; len(got) != 1 || got[0].Filename != "cat_00001_.png" {
		t.Errorf("result outputs = %+v, want cat_00001_.png", got)
	}
	assertPNG(t, done.Result.Files[0])
}

type simOutput struct {
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
}

// simOutputs reads the images a prompt wrote from the simulator's history.
func simOutputs(t *testing.T, sim *comfysim.Sim, id string) []simOutput {
	t.Helper()
	resp, err := http.Get(sim.URL() + "/history/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h map[string]struct {
		Outputs map[string]struct {
			Images []simOutput `json:"images"`
		} `json:"outputs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	var out []simOutput
	for _, o := range h[id].Outputs {
		out = append(out, o.Images...)
	}
	return out
}
