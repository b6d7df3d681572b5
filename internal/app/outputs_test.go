package app_test

import (
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
)

// TestOutputTypes: each output says where ComfyUI kept it: "output" for
// SaveImage, "temp" for PreviewImage; kind is the key it was listed under.
func TestOutputTypes(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	user := e.Login(apptest.User, apptest.UserPass)
	waitAlive(e, user)

	wf := basic("types/saved")
	wf["3"] = node("PreviewImage", map[string]any{"images": link("1", 0)})
	v := submit(e, user, map[string]any{"workflow": wf})
	got := waitStatus(e, user, v.ID, "completed", 10*time.Second)
	for node, want := range map[string]string{"2": "output", "3": "temp"} {
		outs := got.Result.Outputs[node]
		if len(outs) != 1 || outs[0].Type != want || outs[0].Kind != "images" || outs[0].NodeID != node {
			t.Errorf("outputs of node %s = %+v, want one of type %q, kind images", node, outs, want)
		}
	}
	for _, url := range got.Result.Files {
		assertPNG(t, url)
	}
}
