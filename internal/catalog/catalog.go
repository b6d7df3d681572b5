// Package catalog is the capability domain: what one ComfyUI instance can
// run, read from its GET /object_info, and whether a prompt can run on a
// fleet of instances that do not all offer the same.
//
// A Catalog is the compact form of /object_info: the node classes, for each
// its required and optional inputs with their types, numeric bounds and, for
// combo inputs (ckpt_name, lora_name, sampler_name...), the accepted values.
// Its Hash is the sha256 of its canonical encoding (Encode), so instances
// with identical catalogues share one stored copy.
//
// An Index merges the catalogues of a fleet's instances (with their labels);
// Index.Check validates a prompt against the union of what they offer, the
// way ComfyUI's validate_prompt would, and says which catalogues can run all
// of it. See docs/architecture.md, Capabilities.
//
// Package catalog imports nothing internal to the project.
package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Input types with a meaning of their own; any other type names a socket
// (MODEL, IMAGE...) that takes a link.
const (
	TypeInt     = "INT"
	TypeFloat   = "FLOAT"
	TypeString  = "STRING"
	TypeBoolean = "BOOLEAN"
	// TypeCombo is an input that takes one of a list of values: a list type
	// in object_info (["a", "b"]) or "COMBO" with an "options" list.
	TypeCombo = "COMBO"
)

// Catalog is what one instance offers: its node classes by class_type.
type Catalog struct {
	Classes map[string]*Class `json:"classes"`
}

// Class is one node class.
type Class struct {
	// Inputs are the required inputs then the optional ones, each group in
	// declared order. Hidden inputs are left out.
	Inputs []Input `json:"inputs,omitempty"`
	// OutputNode is ComfyUI's output_node: the node is a target of the
	// prompt (SaveImage, PreviewImage...).
	OutputNode bool `json:"outputNode,omitempty"`
}

// Input is one input of a node class.
type Input struct {
	Name     string `json:"name"`
	Required bool   `json:"required,omitempty"`
	// Type is TypeInt, TypeFloat, TypeString, TypeBoolean, TypeCombo or a
	// socket type.
	Type string `json:"type"`
	// Options are a combo's accepted values (strings mostly; numbers are
	// json.Number, also booleans and nil). Empty when the instance offers none.
	Options []any `json:"options,omitempty"`
	// Open marks a combo whose value is not checked at submit: file upload
	// lists (LoadImage's image: uploaded files, which change all the time and
	// are left out), multi-select combos and lists of non-scalar values.
	Open bool `json:"open,omitempty"`
	// Default, Min, Max and Step are the widget options of INT and FLOAT
	// inputs, as served.
	Default json.Number `json:"default,omitempty"`
	Min     json.Number `json:"min,omitempty"`
	Max     json.Number `json:"max,omitempty"`
	Step    json.Number `json:"step,omitempty"`
}

// Input returns the class's input name, if it declares one.
func (c *Class) Input(name string) (*Input, bool) {
	for i := range c.Inputs {
		if c.Inputs[i].Name == name {
			return &c.Inputs[i], true
		}
	}
	return nil, false
}

// Encode is the canonical encoding of c: JSON with classes sorted by name
// and inputs in declared order. Equal catalogues encode to equal bytes.
func (c *Catalog) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		// Only a value json cannot encode gets here, and Parse and Decode
		// produce none.
		panic(fmt.Sprintf("catalog: encode: %v", err))
	}
	return b
}

// Hash is the hex sha256 of Encode: the catalogue's content address.
func (c *Catalog) Hash() string { return HashOf(c.Encode()) }

// HashOf is the hash of an encoded catalogue.
func HashOf(encoded []byte) string {
	sum := sha256.Sum256(encoded)
	return hex.EncodeToString(sum[:])
}

// Decode reads a catalogue written by Encode.
func Decode(b []byte) (*Catalog, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var c Catalog
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("catalog: decode: %w", err)
	}
	if c.Classes == nil {
		c.Classes = map[string]*Class{}
	}
	for name, cl := range c.Classes {
		if cl == nil {
			return nil, fmt.Errorf("catalog: decode: class %q is null", name)
		}
		for i := range cl.Inputs {
			if in := &cl.Inputs[i]; in.Type == TypeCombo && !in.Open && in.Options == nil {
				in.Options = []any{} // an empty list encodes as nothing
			}
		}
	}
	return &c, nil
}

// Record is a stored catalogue: its hash, its encoding and when it was
// first stored.
type Record struct {
	Hash      string
	Data      []byte
	CreatedAt time.Time
}

// Catalog decodes the record.
func (r *Record) Catalog() (*Catalog, error) { return Decode(r.Data) }

// ClassNames lists the class names, sorted.
func (c *Catalog) ClassNames() []string {
	out := make([]string, 0, len(c.Classes))
	for name := range c.Classes {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Model kinds of Models: the model folders of ComfyUI whose files the
// loader nodes offer.
const (
	ModelCheckpoints     = "checkpoints"
	ModelLoras           = "loras"
	ModelVAEs            = "vaes"
	ModelDiffusionModels = "diffusionModels"
	ModelTextEncoders    = "textEncoders"
	ModelControlNets     = "controlNets"
	ModelUpscaleModels   = "upscaleModels"
)

// modelKind says which model folder a combo input lists, "" for none.
func modelKind(class, input string) string {
	switch {
	case input == "ckpt_name":
		return ModelCheckpoints
	case input == "lora_name":
		return ModelLoras
	case input == "vae_name":
		return ModelVAEs
	case input == "unet_name":
		return ModelDiffusionModels
	case input == "control_net_name":
		return ModelControlNets
	case class == "UpscaleModelLoader" && input == "model_name":
		return ModelUpscaleModels
	case strings.HasPrefix(input, "clip_name") && class != "CLIPVisionLoader":
		return ModelTextEncoders
	}
	return ""
}

// Models lists the model files the catalogue's loader nodes offer, by kind
// (ModelCheckpoints...), each list sorted and without repeats. Kinds with no
// file are left out.
func (c *Catalog) Models() map[string][]string {
	out := map[string][]string{}
	for name, cl := range c.Classes {
		for _, in := range cl.Inputs {
			kind := modelKind(name, in.Name)
			if kind == "" || in.Type != TypeCombo {
				continue
			}
			for _, o := range in.Options {
				if s, ok := o.(string); ok {
					out[kind] = append(out[kind], s)
				}
			}
		}
	}
	for kind, list := range out {
		slices.Sort(list)
		out[kind] = slices.Compact(list)
	}
	return out
}

// Summary is the short description of a catalogue that instance lists show.
type Summary struct {
	Hash        string   `json:"hash"`
	NodeClasses int      `json:"nodeClasses"`
	Checkpoints []string `json:"checkpoints"`
	Loras       []string `json:"loras"`
}

// Summary describes c, whose hash is hash.
func (c *Catalog) Summary(hash string) Summary {
	m := c.Models()
	s := Summary{Hash: hash, NodeClasses: len(c.Classes), Checkpoints: m[ModelCheckpoints], Loras: m[ModelLoras]}
	if s.Checkpoints == nil {
		s.Checkpoints = []string{}
	}
	if s.Loras == nil {
		s.Loras = []string{}
	}
	return s
}
