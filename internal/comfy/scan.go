package comfy

import "bytes"

// A small scanner over JSON that json.Valid has accepted: the read loop
// decodes a dozen frames per prompt, and picking the few members it needs
// out of the bytes costs a fraction of decoding them with reflection.
// Every function here assumes valid JSON; on anything else it stops
// without panicking, but its answers mean nothing.

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// valueEnd returns the index just past the value that starts at b[i].
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // a number, true, false or null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// stringEnd returns the index just past the string that starts at b[i].
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// eachMember calls fn with every member of the object obj (its key as
// written, quotes included, and its value). obj that is not an object
// calls fn for nothing.
func eachMember(obj []byte, fn func(key, val []byte)) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	i = skipSpace(obj, i+1)
	for i < len(obj) && obj[i] == '"' {
		k := stringEnd(obj, i)
		key := obj[i:k]
		i = skipSpace(obj, k)
		if i >= len(obj) || obj[i] != ':' {
			return
		}
		v := skipSpace(obj, i+1)
		e := valueEnd(obj, v)
		fn(key, obj[v:e])
		i = skipSpace(obj, e)
		if i >= len(obj) || obj[i] != ',' {
			return
		}
		i = skipSpace(obj, i+1)
	}
}

// keyIs reports whether the quoted key names name, matched as
// encoding/json matches a struct field's tag: case-insensitively.
func keyIs(key []byte, name string) bool {
	if len(key) >= 2 && bytes.IndexByte(key, '\\') < 0 {
		return bytes.EqualFold(key[1:len(key)-1], []byte(name))
	}
	return bytes.EqualFold([]byte(jsonString(key)), []byte(name))
}
