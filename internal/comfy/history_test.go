package comfy

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHistorySuccess(t *testing.T) {
	t.Parallel()
	c := serveRecorded(t, rec(t, "s02/history"))

	h, err := c.History(t.Context(), "3cc2a991-1a19-499b-9ebd-92558744ea51")
	if err != nil {
		t.Fatalf("History: %v", err)
	}

	if !h.Succeeded() || !h.Status.Completed || h.Interrupted() || h.PromptID != "3cc2a991-1a19-499b-9ebd-92558744ea51" {
		t.Errorf("got status %+v", h.Status)
	}
	if _, ok := h.ErrorMessage(); ok {
		t.Errorf("ErrorMessage found on a successful run")
	}
	events := make([]string, 0, len(h.Status.Messages))
	for _, m := range h.Status.Messages {
		events = append(events, m.Event)
	}
	if diff := cmp.Diff([]string{"execution_start", "execution_cached", "execution_success"}, events); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	want := []FileRef{{Kind: "images", Filename: "gw_basic_00001_.png", Subfolder: "", Type: "output"}}
	if diff := cmp.Diff(want, h.Outputs["4"].Files()); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestHistoryTempPreview(t *testing.T) {
	t.Parallel()
	c := serveRecorded(t, rec(t, "s03/history_preview"))
	h, err := c.History(t.Context(), "64486de3-f05c-485c-86ba-3c85508f53eb")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	want := []FileRef{{Kind: "images", Filename: "ComfyUI_temp_iereb_00001_.png", Type: "temp"}}
	if diff := cmp.Diff(want, h.Outputs["2"].Files()); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestHistoryNotThere(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"s05/history_C", "s05/history_E_cleared", "s05/history_A_after_delete"} {
		r := rec(t, key)
		c := serveRecorded(t, r)
		id := r.Path[len("/history/"):]
		_, err := c.History(t.Context(), id)
		if !errors.Is(err, ErrNotInHistory) {
			t.Errorf("%s: got %v, want ErrNotInHistory", key, err)
		}
	}
}

func TestHistoryInterrupted(t *testing.T) {
	t.Parallel()
	c := serveRecorded(t, rec(t, "s05/history_A"))
	h, err := c.History(t.Context(), "3c7fadcb-9697-43c9-94ad-c53faa7e914f")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if !h.Interrupted() || h.Succeeded() || h.Status.StatusStr != "error" || h.Status.Completed {
		t.Errorf("got interrupted=%v status=%+v", h.Interrupted(), h.Status)
	}
	if _, ok := h.ErrorMessage(); ok {
		t.Errorf("ErrorMessage found on an interrupted run")
	}
	if len(h.Outputs) != 0 {
		t.Errorf("outputs = %v, want none", h.Outputs)
	}
}

func TestHistoryExecutionError(t *testing.T) {
	t.Parallel()
	c := serveRecorded(t, rec(t, "s04/runtime_error_history"))
	h, err := c.History(t.Context(), "bb142bcc-e5b5-487d-b1c6-da7ee478b5cb")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	e, ok := h.ErrorMessage()
	if !ok {
		t.Fatal("no ErrorMessage")
	}
	if h.Interrupted() || h.Succeeded() {
		t.Errorf("interrupted=%v succeeded=%v", h.Interrupted(), h.Succeeded())
	}
	if e.NodeID != "3" || e.NodeType != "ImageBatch" || e.ExceptionType != "RuntimeError" ||
		e.Timestamp == 0 || len(e.Traceback) == 0 || len(e.Executed) != 4 {
		t.Errorf("got %+v", e)
	}
	wantMsg := "node 3 (ImageBatch) failed: RuntimeError: Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for tensor number 1 in the list."
	if e.Error() != wantMsg {
		t.Errorf("Error() = %q, want %q", e.Error(), wantMsg)
	}
}

func TestHistoryToleratesOddShapes(t *testing.T) {
	t.Parallel()
	body := `{"p": {"prompt": [], "outputs": {"9": {"text": ["hi"]}}, "meta": {},
		"status": {"status_str": "error", "completed": false, "future_key": 1, "messages": [
			"not a pair", ["execution_error", {"node_id": "9", "timestamp": 1.5e12, "executed": "oops"}]]}}}`
	c := serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) })
	h, err := c.History(t.Context(), "p")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(h.Status.Messages) != 2 || h.Status.Messages[0].Event != "" {
		t.Errorf("messages = %+v", h.Status.Messages)
	}
	e, ok := h.ErrorMessage()
	if !ok || e.NodeID != "9" || e.Timestamp != 1.5e12 {
		t.Errorf("ErrorMessage = %+v, %v", e, ok)
	}
	if files := h.Outputs["9"].Files(); len(files) != 0 {
		t.Errorf("text output gave files %v", files)
	}
}

func TestHistoryMessageRoundTrip(t *testing.T) {
	t.Parallel()
	in := `[["execution_start",{"prompt_id":"p","timestamp":1}],["execution_success",{"prompt_id":"p"}]]`
	var msgs []HistoryMessage
	if err := json.Unmarshal([]byte(in), &msgs); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(msgs)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != in {
		t.Errorf("got %s, want %s", out, in)
	}
}

func TestNodeOutputFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		out  string
		want []FileRef
	}{
		{
			name: "SaveImage",
			out:  `{"images": [{"filename": "a_00001_.png", "subfolder": "gw", "type": "output"}, {"filename": "a_00002_.png", "subfolder": "gw", "type": "output"}]}`,
			want: []FileRef{
				{Kind: "images", Filename: "a_00001_.png", Subfolder: "gw", Type: "output"},
				{Kind: "images", Filename: "a_00002_.png", Subfolder: "gw", Type: "output"},
			},
		},
		{
			name: "SaveAnimatedWEBP images plus animated flags",
			out:  `{"images": [{"filename": "x.webp", "subfolder": "", "type": "output"}], "animated": [true]}`,
			want: []FileRef{{Kind: "images", Filename: "x.webp", Type: "output"}},
		},
		{
			name: "VideoHelperSuite gifs with extra keys",
			out:  `{"gifs": [{"filename": "v.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4", "frame_rate": 8.0, "fullpath": "/x/v.mp4"}]}`,
			want: []FileRef{{Kind: "gifs", Filename: "v.mp4", Type: "output"}},
		},
		{
			name: "audio video and text",
			out:  `{"video": [{"filename": "v.mp4", "subfolder": "s", "type": "temp"}], "text": ["caption"], "audio": [{"filename": "a.flac", "subfolder": "", "type": "output"}]}`,
			want: []FileRef{
				{Kind: "audio", Filename: "a.flac", Type: "output"},
				{Kind: "video", Filename: "v.mp4", Subfolder: "s", Type: "temp"},
			},
		},
		{
			name: "text entries that look like files are skipped",
			out:  `{"text": [{"filename": "t.txt", "subfolder": "", "type": "output"}]}`,
		},
		{
			name: "non-file values",
			out:  `{"images": [{"subfolder": "", "type": "output"}, {"filename": ""}, {"filename": 3}, "x.png", null], "count": 3, "meta": {"filename": "m.png"}, "3d": [[1, 2]]}`,
		},
		{
			name: "filename without subfolder or type",
			out:  `{"images": [{"filename": "bare.png"}]}`,
			want: []FileRef{{Kind: "images", Filename: "bare.png"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var o NodeOutput
			if err := json.Unmarshal([]byte(tt.out), &o); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, o.Files()); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHistoryRunTime(t *testing.T) {
	msg := func(event, data string) HistoryMessage {
		return HistoryMessage{Event: event, Data: json.RawMessage(data)}
	}
	cases := map[string]struct {
		msgs []HistoryMessage
		want time.Duration
		ok   bool
	}{
		"success": {[]HistoryMessage{
			msg(EventExecutionStart, `{"prompt_id":"p","timestamp":1751500000100}`),
			msg(EventExecutionCached, `{"nodes":[],"prompt_id":"p","timestamp":1751500000101}`),
			msg(EventExecutionSuccess, `{"prompt_id":"p","timestamp":1751500000180}`),
		}, 80 * time.Millisecond, true},
		"no success": {[]HistoryMessage{
			msg(EventExecutionStart, `{"prompt_id":"p","timestamp":1751500000100}`),
			msg(EventExecutionError, `{"prompt_id":"p","timestamp":1751500000180}`),
		}, 0, false},
		"no stamp":     {[]HistoryMessage{msg(EventExecutionStart, `{"prompt_id":"p"}`), msg(EventExecutionSuccess, `{"timestamp":5}`)}, 0, false},
		"out of order": {[]HistoryMessage{msg(EventExecutionStart, `{"timestamp":9}`), msg(EventExecutionSuccess, `{"timestamp":5}`)}, 0, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h := &HistoryEntry{Status: HistoryStatus{Messages: c.msgs}}
			if got, ok := h.RunTime(); got != c.want || ok != c.ok {
				t.Errorf("RunTime = %v, %v; want %v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}
