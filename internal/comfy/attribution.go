package comfy

// attribution follows the executing messages of one connection, so that a
// type-1 preview, which carries neither prompt nor node, can be attributed
// to the node running when it came. ComfyUI runs one prompt at a time and
// sends every frame through one FIFO, so a preview belongs to the node of
// the executing message before it.
type attribution struct {
	prompt string // "" when unknown
	node   string
}

// apply records what ev announces, or fills in the prompt and node of a
// preview that does not name them.
func (a *attribution) apply(ev *Event) {
	switch ev.Type {
	case EventExecutionStart:
		a.prompt, a.node = ev.PromptID, ""
	case EventExecuting:
		switch {
		case ev.NodeNull:
			a.prompt, a.node = "", ""
		default:
			// The executing a reconnecting client gets has no prompt_id:
			// the prompt stays unknown rather than guessed.
			a.prompt, a.node = ev.PromptID, ev.Node
		}
	case EventBinary:
		if ev.BinaryType != BinaryPreviewImage && ev.BinaryType != BinaryPreviewImageWithMetadata {
			return
		}
		if ev.PromptID == "" {
			ev.PromptID = a.prompt
		}
		if ev.Node == "" {
			ev.Node = a.node
		}
	}
}
