package comfy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestAttribution: a preview without metadata belongs to the node the last
// executing message announced; one with metadata keeps what it names.
func TestAttribution(t *testing.T) {
	t.Parallel()
	legacy := func() Event { return Event{Type: EventBinary, BinaryType: BinaryPreviewImage} }
	type step struct {
		ev     Event
		wantEv *Event // for a binary event: how it is filled in
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"before any executing", []step{{ev: legacy(), wantEv: &Event{Type: EventBinary, BinaryType: 1}}}},
		{"executing a node", []step{
			{ev: Event{Type: EventExecutionStart, PromptID: "p1"}},
			{ev: Event{Type: EventExecuting, PromptID: "p1", Node: "5"}},
			{ev: legacy(), wantEv: &Event{Type: EventBinary, BinaryType: 1, PromptID: "p1", Node: "5"}},
			{ev: Event{Type: EventExecuting, PromptID: "p1", Node: "7"}},
			{ev: legacy(), wantEv: &Event{Type: EventBinary, BinaryType: 1, PromptID: "p1", Node: "7"}},
		}},
		{"the prompt ended", []step{
			{ev: Event{Type: EventExecuting, PromptID: "p1", Node: "5"}},
			{ev: Event{Type: EventExecuting, PromptID: "p1", NodeNull: true}},
			{ev: legacy(), wantEv: &Event{Type: EventBinary, BinaryType: 1}},
		}},
		{"the executing replayed on reconnect names no prompt", []step{
			{ev: Event{Type: EventExecuting, PromptID: "p1", Node: "5"}},
			{ev: Event{Type: EventExecuting, Node: "5"}},
			{ev: legacy(), wantEv: &Event{Type: EventBinary, BinaryType: 1, Node: "5"}},
		}},
		{"metadata wins", []step{
			{ev: Event{Type: EventExecuting, PromptID: "p1", Node: "5"}},
			{
				ev:     Event{Type: EventBinary, BinaryType: BinaryPreviewImageWithMetadata, PromptID: "p2", Node: "9"},
				wantEv: &Event{Type: EventBinary, BinaryType: 4, PromptID: "p2", Node: "9"},
			},
		}},
		{"text frames are left alone", []step{
			{ev: Event{Type: EventExecuting, PromptID: "p1", Node: "5"}},
			{ev: Event{Type: EventBinary, BinaryType: BinaryText, Node: "3"}, wantEv: &Event{Type: EventBinary, BinaryType: 3, Node: "3"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var a attribution
			for i, st := range tt.steps {
				ev := st.ev
				a.apply(&ev)
				if st.wantEv == nil {
					continue
				}
				if diff := cmp.Diff(*st.wantEv, ev); diff != "" {
					t.Errorf("step %d (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}
