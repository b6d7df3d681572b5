package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
)

const (
	// envPrefix starts every environment variable Load reads.
	envPrefix = "COMFYFLEET_"
	// envAdminPassword is the short name of auth.adminPassword.
	envAdminPassword = "COMFYFLEET_ADMIN_PASSWORD"
)

// Load reads the YAML file at path (none when path is "") and then the
// COMFYFLEET_ variables of env (in os.Environ form). The file is strict:
// an unknown key is a *FieldError naming it. Defaults are not applied and
// nothing is validated yet: apply flags with Set, then call WithDefaults
// and Validate (see the package comment).
func Load(path string, env []string) (Config, error) {
	var c Config
	if path != "" {
		if err := c.readFile(path); err != nil {
			return Config{}, err
		}
	}
	if err := c.applyEnv(env); err != nil {
		return Config{}, fmt.Errorf("config environment: %w", err)
	}
	return c, nil
}

func (c *Config) readFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var x any
	if err := yaml.Unmarshal(b, &x); err != nil {
		return fmt.Errorf("parse config %s: %w", path, err)
	}
	if err := decodeValue(reflect.ValueOf(c).Elem(), "", "yaml", x); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// applyEnv applies the COMFYFLEET_ variables of env; an empty value is
// ignored and an unknown name is an error.
func (c *Config) applyEnv(env []string) error {
	keys := envKeys()
	var errs []error
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || isMainEnv(name) || value == "" {
			continue
		}
		key, ok := keys[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown setting (see config.example.yaml)", name))
			continue
		}
		if err := c.Set(key, value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// isMainEnv reports whether name is one of main's own variables, which
// are not settings.
func isMainEnv(name string) bool {
	switch name {
	case "COMFYFLEET_CONFIG",
		// The client commands' own (cmd/comfyfleet/cli.go).
		"COMFYFLEET_URL", "COMFYFLEET_API_KEY", "COMFYFLEET_CLI_CONFIG":
		return true
	}
	return false
}

// envKeys maps every environment variable name to its key.
func envKeys() map[string]string {
	m := map[string]string{envAdminPassword: "auth.adminPassword"}
	for _, k := range Keys() {
		m[EnvVar(k)] = k
	}
	return m
}

// Set sets the scalar setting named by its dotted key, as in the YAML file
// ("server.listen", "healthCheck.interval", "dataDir"; case does not
// matter), parsing value as the file would: integers, true/false, Go
// durations for Duration fields, milliseconds or a duration for Millis
// fields. The key "demo" sets Demo. Main applies its flags with Set; the
// environment goes through it too. Lists (servers, auth.users) are set in
// the file only.
func (c *Config) Set(key, value string) error {
	f, ok := c.setting(key)
	if !ok {
		return &FieldError{Field: key, Message: "unknown setting"}
	}
	x, err := scalarFromString(f.Type(), value)
	if err != nil {
		return &FieldError{Field: key, Message: err.Error()}
	}
	return decodeValue(f, key, "yaml", x)
}

// setting finds the scalar field of key.
func (c *Config) setting(key string) (reflect.Value, bool) {
	if strings.EqualFold(key, "demo") {
		return reflect.ValueOf(&c.Demo).Elem(), true
	}
	f, ok := lookup(reflect.ValueOf(c).Elem(), "yaml", key, true)
	return f, ok && isScalar(f.Type())
}

// scalarFromString turns a string of Set into the generic value a YAML
// file would hold for a field of type t.
func scalarFromString(t reflect.Type, s string) (any, error) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[anyDecoder]()) {
		return s, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, errors.New("must be true or false")
		}
		return b, nil
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, errors.New("must be a whole number")
		}
		return n, nil
	}
	return s, nil
}

// Keys lists the dotted keys of every scalar setting, in struct order, as
// accepted by Set; EnvVar gives each one's environment variable.
func Keys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := tagName(f, "yaml")
			switch {
			case name == "":
			case isScalar(f.Type):
				keys = append(keys, joinPath(prefix, name))
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, joinPath(prefix, name))
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return append(keys, "demo")
}

// EnvVar is the environment variable of a key: COMFYFLEET_ and the key in
// upper snake case, "." becoming "_" ("server.publicBaseUrl" is
// COMFYFLEET_SERVER_PUBLIC_BASE_URL).
func EnvVar(key string) string {
	var b strings.Builder
	b.WriteString(envPrefix)
	for i, r := range key {
		switch {
		case r == '.':
			b.WriteByte('_')
		case unicode.IsUpper(r) && i > 0:
			b.WriteByte('_')
			b.WriteRune(r)
		default:
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return b.String()
}

// isScalar reports whether a field of type t is one setting of Set: a
// string, bool, integer, or one of the custom types, which read themselves
// from a string (Prefixes from "10.0.0.0/8,127.0.0.1").
func isScalar(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64:
		return true
	}
	return reflect.PointerTo(t).Implements(reflect.TypeFor[anyDecoder]())
}

// decodeValue sets dst from x, a value decoded generically from YAML or
// JSON (maps, lists, strings, numbers, bools, nil), naming struct fields
// by their tag ("yaml" or "json"). nil sets the zero value, that is the
// default. Errors are *FieldError naming path, joined.
func decodeValue(dst reflect.Value, path, tag string, x any) error {
	if x == nil {
		dst.SetZero()
		return nil
	}
	if d, ok := dst.Addr().Interface().(anyDecoder); ok {
		if err := d.decodeAny(x); err != nil {
			return &FieldError{Field: path, Message: err.Error()}
		}
		return nil
	}
	switch dst.Kind() {
	case reflect.Pointer:
		// A pointer is a setting whose zero value means something (prefetch
		// 0 is off): nil is "unset", left for WithDefaults.
		v := reflect.New(dst.Type().Elem())
		if err := decodeValue(v.Elem(), path, tag, x); err != nil {
			return err
		}
		dst.Set(v)
	case reflect.Struct:
		return decodeStruct(dst, path, tag, x)
	case reflect.Slice:
		return decodeSlice(dst, path, tag, x)
	case reflect.String:
		s, ok := x.(string)
		if !ok {
			return &FieldError{Field: path, Message: "must be a string"}
		}
		dst.SetString(s)
	case reflect.Bool:
		b, ok := x.(bool)
		if !ok {
			return &FieldError{Field: path, Message: "must be true or false"}
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, ok := toInt64(x)
		if !ok || dst.OverflowInt(n) {
			return &FieldError{Field: path, Message: "must be a whole number"}
		}
		dst.SetInt(n)
	default:
		panic("config: no decoder for " + dst.Type().String())
	}
	return nil
}

// decodeStruct sets the fields of dst named by the keys of x and leaves the
// others as they are.
func decodeStruct(dst reflect.Value, path, tag string, x any) error {
	obj, ok := x.(map[string]any)
	if !ok {
		return &FieldError{Field: path, Message: "must be a mapping of keys to values"}
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		p := joinPath(path, k)
		f, ok := fieldByTag(dst, tag, k, false)
		if !ok {
			errs = append(errs, &FieldError{Field: p, Message: "unknown field"})
			continue
		}
		errs = append(errs, decodeValue(f, p, tag, obj[k]))
	}
	return errors.Join(errs...)
}

// decodeSlice replaces dst with the list x.
func decodeSlice(dst reflect.Value, path, tag string, x any) error {
	list, ok := x.([]any)
	if !ok {
		return &FieldError{Field: path, Message: "must be a list"}
	}
	out := reflect.MakeSlice(dst.Type(), len(list), len(list))
	var errs []error
	for i, e := range list {
		errs = append(errs, decodeValue(out.Index(i), fmt.Sprintf("%s[%d]", path, i), tag, e))
	}
	dst.Set(out)
	return errors.Join(errs...)
}

// lookup finds the field of the dotted key under the struct v.
func lookup(v reflect.Value, tag, key string, fold bool) (reflect.Value, bool) {
	for seg := range strings.SplitSeq(key, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		f, ok := fieldByTag(v, tag, seg, fold)
		if !ok {
			return reflect.Value{}, false
		}
		v = f
	}
	return v, true
}

// fieldByTag finds the field of the struct v whose tag names it.
func fieldByTag(v reflect.Value, tag, name string, fold bool) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		n := tagName(t.Field(i), tag)
		if n != "" && (n == name || fold && strings.EqualFold(n, name)) {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// tagName is the name a struct tag gives f, "" for none or "-".
func tagName(f reflect.StructField, tag string) string {
	name, _, _ := strings.Cut(f.Tag.Get(tag), ",")
	if name == "-" {
		return ""
	}
	return name
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
