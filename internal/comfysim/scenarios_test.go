package comfysim

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
)

// One test per recorded scenario of traces/INDEX.md: the simulator must
// answer the same statuses and body shapes and send the same frames, in the
// same order, with the same fields.

func TestTraceS01SystemStatsObjectInfo(t *testing.T) {
	t.Parallel()
	// The traced server had no models and no inputs: with empty lists the
	// /object_info body is the recorded one, byte for byte (321490 bytes).
	s := startSim(t, Options{Checkpoints: []string{}})
	replay(t, s, loadTrace(t, "s01_system_stats_object_info.json"), replayOpts{
		spec: shapeSpec{
			blind: []string{"ram_total", "ram_free", "vram_total", "vram_free", "torch_vram_total", "torch_vram_free"},
			loose: []string{"argv"},
		},
		exactLength: map[string]bool{"/object_info": true},
	})
}

func TestTraceS02BasicWorkflow(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	replay(t, s, loadTrace(t, "s02_basic_workflow.json"), replayOpts{})
}

func TestTraceS02bBinaryFrames(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	replay(t, s, loadTrace(t, "s02b_ws_binary_frames.json"), replayOpts{})
}

func TestTraceS02cRouting(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	replay(t, s, loadTrace(t, "s02c_ws_routing_observer.json"), replayOpts{})
}

func TestTraceS03UploadLoadImage(t *testing.T) {
	t.Parallel()
	tf := loadTrace(t, "s03_upload_loadimage.json")
	s := startSim(t, Options{})
	replay(t, s, tf, replayOpts{
		files: map[string][]byte{"112 40x30": recordedUpload(t, tf), "114 41x30": testPNG(41, 30)},
	})
}

// recordedUpload is the uploaded PNG, as /view returned it in the trace.
func recordedUpload(t *testing.T, tf traceFile) []byte {
	for _, e := range tf.Events {
		if e.Label != "view_uploaded_input" {
			continue
		}
		var r traceResponse
		json.Unmarshal(e.Response, &r)
		b, err := base64.StdEncoding.DecodeString(r.Base64)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Fatal("no view_uploaded_input event")
	return nil
}

func TestTraceS04InvalidPrompts(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	replay(t, s, loadTrace(t, "s04_invalid_prompts.json"), replayOpts{
		// torch tensor reprs.
		spec: shapeSpec{loose: []string{"current_inputs.*.*"}},
	})
}

func TestTraceS05InterruptAndQueueDelete(t *testing.T) {
	t.Parallel()
	// The traced ImageBlur nodes took ~0.9 s on 512x512; slow them down so
	// the queue manipulations and the interrupt land while A runs.
	s := startSim(t, Options{})
	s.SetNodeDelay("ImageBlur", 400*time.Millisecond)
	replay(t, s, loadTrace(t, "s05_interrupt_and_queue_delete.json"), replayOpts{statusApart: true})
}

func TestTraceS06Timings(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	replay(t, s, loadTrace(t, "s06_timings.json"), replayOpts{truncated: true})
}
