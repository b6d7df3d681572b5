package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// ErrFileReference is matched (errors.Is) by the *Error of an input through
// which a task would make ComfyUI read a file it did not bring itself.
var ErrFileReference = errors.New("workflow: file reference not allowed")

// An instance's input, output and temp folders are shared by every task that
// runs there, so a task of a plain user may load only the files it brings
// as {"fileId": ...} params, which the gateway uploads to a folder of the
// task's own. CheckFileReferences refuses the ways a value can reach
// another file:
//
//   - in any input, a string that ends with a folder annotation ("[input]",
//     "[output]", "[temp]": ComfyUI slices it off and reads from that
//     folder, with or without the space before it), that has a ".." path
//     segment, or that is a file: URL;
//   - in a file input (isFileInput), a string that names a subfolder or a
//     path ("/" or "\"), a drive, an asset hash or a URL (":").
//
// filename_prefix is not checked: the gateway moves it under the task's
// folder. A plain name in a file input ("example.png") stays allowed: it names a
// file at the root of the instance's input folder, which holds what the
// operator put there, never a task's upload. Model names keep their
// subfolders ("sdxl/base.safetensors" in ckpt_name), since inputs named
// like "<kind>_name" are not file inputs.

// annotations are ComfyUI's folder annotations (folder_paths.annotated_filepath).
var annotations = []string{"[input]", "[output]", "[temp]"}

// fileInputNames are input names that hold a file name or path in any node.
var fileInputNames = map[string]bool{
	"image": true, "mask": true, "video": true, "audio": true, "file": true, "filename": true,
	"path": true, "directory": true, "folder": true, "url": true, "model_file": true,
}

// fileInputSuffixes mark an input name as a file input in any node.
var fileInputSuffixes = []string{"_path", "_file", "_filename", "_dir", "_directory", "_folder", "_url"}

// modelInput matches the inputs of loader nodes that name a model
// (ckpt_name, lora_name, clip_name1, ...): ComfyUI resolves them in its
// model folders, where subfolders are normal.
var modelInput = regexp.MustCompile(`_name\d*$`)

// isFileInput reports whether input of a node of class names a file to
// read: its name says so (image, video, audio, file, *_path, ...), or the
// node is a loader (its class contains "Load") and the input is not a
// model name.
func isFileInput(class, input string) bool {
	in := strings.ToLower(input)
	if fileInputNames[in] {
		return true
	}
	for _, s := range fileInputSuffixes {
		if strings.HasSuffix(in, s) {
			return true
		}
	}
	return strings.Contains(strings.ToLower(class), "load") && !modelInput.MatchString(in)
}

// CheckFileReferences returns an *Error matching ErrFileReference for the
// first input, in node id then input name order, whose value could make
// ComfyUI read a file the task did not bring (see the rules above). params
// are the task's resolved params: the inputs they set are checked with
// their values and named "params.<key>"; a file param is set by the gateway
// and is not checked. Other inputs are named
// "workflow.<nodeId>.inputs.<input>". It stops with ctx's error when ctx ends.
func (p Prompt) CheckFileReferences(ctx context.Context, params []Param) error {
	set := make(map[[2]string]bool, len(params))
	for i, prm := range params {
		if err := stopped(ctx, i); err != nil {
			return err
		}
		set[[2]string{prm.NodeID, prm.Input}] = true
		if prm.File != nil {
			continue
		}
		if err := checkValue("params."+prm.Key, p[prm.NodeID].ClassType, prm.Input, prm.Value); err != nil {
			return err
		}
	}
	for i, id := range slices.Sorted(maps.Keys(p)) {
		if err := stopped(ctx, i); err != nil {
			return err
		}
		n := p[id]
		for _, input := range slices.Sorted(maps.Keys(n.Inputs)) {
			if set[[2]string{id, input}] {
				continue
			}
			if err := checkValue("workflow."+id+".inputs."+input, n.ClassType, input, n.Inputs[input]); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkValue checks every string of one input's value; links are skipped,
// and so is filename_prefix: it is only written to, under the task's folder
// (ApplyOptions.OutputDir).
func checkValue(field, class, input string, raw json.RawMessage) error {
	if input == prefixInput {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil || isLink(v) {
		return nil
	}
	fileInput := isFileInput(class, input)
	var reason string
	walkStrings(v, func(s string) bool {
		reason = refusal(s, fileInput)
		return reason == ""
	})
	if reason == "" {
		return nil
	}
	return &Error{Field: field, kind: ErrFileReference, Message: reason +
		`; a task loads only the files it brings: upload them with POST /api/files/upload and pass {"fileId": "<id>"} in params`}
}

// isLink reports whether v is a link to another node's output: [id, slot].
func isLink(v any) bool {
	l, ok := v.([]any)
	if !ok || len(l) != 2 {
		return false
	}
	_, id := l[0].(string)
	_, slot := l[1].(float64)
	return id && slot
}

// walkStrings calls fn with every string in v, depth first, until fn
// returns false.
func walkStrings(v any, fn func(string) bool) bool {
	switch x := v.(type) {
	case string:
		return fn(x)
	case []any:
		for _, e := range x {
			if !walkStrings(e, fn) {
				return false
			}
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if !walkStrings(x[k], fn) {
				return false
			}
		}
	}
	return true
}

// refusal says why s may not be used as an input value, or "".
func refusal(s string, fileInput bool) string {
	lower := strings.ToLower(strings.TrimSpace(s))
	for _, a := range annotations {
		if strings.HasSuffix(lower, a) {
			return "names a file by a folder annotation (" + a + "), which reads another folder of the instance"
		}
	}
	if hasDotDot(lower) {
		return `climbs out of a folder with ".."`
	}
	if strings.HasPrefix(lower, "file:") {
		return "is a file: URL"
	}
	if fileInput && strings.ContainsAny(lower, `/\`) {
		return "names a file in a subfolder or by its path; only plain file names are allowed here"
	}
	if fileInput && strings.ContainsRune(lower, ':') {
		return `names a drive, an asset or a URL (":"); only plain file names are allowed here`
	}
	return ""
}

// hasDotDot reports whether s has a ".." segment between slashes or
// backslashes.
func hasDotDot(s string) bool {
	for seg := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == '/' || r == '\\' }) {
		if strings.TrimSpace(seg) == ".." {
			return true
		}
	}
	return false
}

// prefixInput is the input of every ComfyUI node that saves files (SaveImage,
// SaveAnimatedWEBP, SaveVideo, SaveAudio, SaveLatent, ...): the file name
// prefix, whose "/" parts are subfolders of the output folder.
const prefixInput = "filename_prefix"

// defaultPrefix is ComfyUI's own default prefix, used when a prefix is not
// a string or cleans to nothing.
const defaultPrefix = "ComfyUI"

// OutputPrefix is the filename_prefix a node gets when its outputs go under
// dir: dir, "/", then the prefix given with its empty, "." and ".." parts
// dropped and the characters no file system takes (control characters and
// :*?"<>|) replaced by "_". A prefix that is not a string (a link), or that
// cleans to nothing, becomes "ComfyUI".
func OutputPrefix(dir string, given json.RawMessage) string {
	var s string
	if json.Unmarshal(given, &s) != nil {
		s = ""
	}
	var parts []string
	for seg := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == '/' || r == '\\' }) {
		seg = strings.Map(func(r rune) rune {
			if unicode.IsControl(r) || strings.ContainsRune(`:*?"<>|`, r) {
				return '_'
			}
			return r
		}, strings.TrimSpace(seg))
		if seg != "" && seg != "." && seg != ".." {
			parts = append(parts, seg)
		}
	}
	if len(parts) == 0 {
		parts = []string{defaultPrefix}
	}
	return dir + "/" + strings.Join(parts, "/")
}
