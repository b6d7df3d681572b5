package dispatch

import (
	"strings"
	"unicode/utf8"

	"github.com/comfyfleet/comfyfleet/internal/task"
)

// tracebackCut marks the start of a traceback that was cut.
const tracebackCut = "...\n"

// traceback joins the frames of an execution_error's traceback (each ends
// with a newline) into at most task.MaxTraceback bytes. A longer one keeps
// its end, where the frame that raised is, from a whole UTF-8 character on.
func traceback(frames []string) string {
	s := strings.Join(frames, "")
	if len(s) <= task.MaxTraceback {
		return s
	}
	cut := len(s) - (task.MaxTraceback - len(tracebackCut))
	for cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut++
	}
	return tracebackCut + s[cut:]
}
