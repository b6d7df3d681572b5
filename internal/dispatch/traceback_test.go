package dispatch

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// TestExecutionErrorKeepsWhatComfyUISaid: the task's error carries the
// exception's type and traceback of a recorded execution_error.
func TestExecutionErrorKeepsWhatComfyUISaid(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("testdata", "execution_error.json"))
	if err != nil {
		t.Fatal(err)
	}
	entry := &comfy.HistoryEntry{Status: comfy.HistoryStatus{StatusStr: "error", Messages: []comfy.HistoryMessage{
		{Event: comfy.EventExecutionStart, Data: json.RawMessage(`{}`)},
		{Event: comfy.EventExecutionError, Data: raw},
	}}}
	got := executionError(entry)
	var frames struct{ Traceback []string }
	if err := json.Unmarshal(raw, &frames); err != nil {
		t.Fatal(err)
	}
	want := &task.Error{
		Type:          task.ErrorTypeExecution,
		Message:       "Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for tensor number 1 in the list.\n",
		NodeID:        "3",
		NodeType:      "ImageBatch",
		ExceptionType: "RuntimeError",
		Traceback:     strings.Join(frames.Traceback, ""),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("task error (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(got.Traceback, `  File "/srv/ComfyUI/execution.py", line 498, in execute`) ||
		!strings.HasSuffix(got.Traceback, "    s = torch.cat((image1, image2), dim=0)\n        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n") {
		t.Errorf("traceback = %q", got.Traceback)
	}
}

func TestTracebackIsBounded(t *testing.T) {
	t.Parallel()
	last := "  File \"/srv/ComfyUI/nodes.py\", line 1, in raiser\n    raise RuntimeError(\"é\")\n"
	var frames []string
	for i := 0; len(frames)*40 < 3*task.MaxTraceback; i++ {
		frames = append(frames, strings.Repeat("é", 19)+"\n") // 39 bytes: cuts fall inside characters
	}
	frames = append(frames, last)
	got := traceback(frames)
	if len(got) > task.MaxTraceback || len(got) < task.MaxTraceback-4 {
		t.Errorf("len = %d, want at most %d and close to it", len(got), task.MaxTraceback)
	}
	if !utf8.ValidString(got) || !strings.HasPrefix(got, tracebackCut) || !strings.HasSuffix(got, last) {
		t.Errorf("traceback = %q...%q: want valid UTF-8 from %q to the last frame", got[:20], got[len(got)-20:], tracebackCut)
	}
	if got := traceback([]string{"a\n", "b\n"}); got != "a\nb\n" {
		t.Errorf("short traceback = %q, want it whole", got)
	}
}
