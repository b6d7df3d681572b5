package task

import (
	"reflect"
	"testing"
)

func TestResultWithURLs(t *testing.T) {
	t.Parallel()
	if (*Result)(nil).WithURLs(nil) != nil {
		t.Fatal("nil result: want nil")
	}
	r := &Result{
		Files: []string{"http://a/files/f1/x.png", "http://a/files/f2/y.png", "http://old/legacy.png"},
		Outputs: map[string][]Output{
			"9":  {{URL: "http://a/files/f1/x.png", Filename: "x.png", FileID: "f1"}, {URL: "http://a/files/f2/y.png", Filename: "y.png", FileID: "f2"}},
			"12": {{URL: "http://old/legacy.png", Filename: "legacy.png"}},
		},
	}
	orig := &Result{Files: append([]string(nil), r.Files...), Outputs: map[string][]Output{
		"9": append([]Output(nil), r.Outputs["9"]...), "12": append([]Output(nil), r.Outputs["12"]...),
	}}
	got := r.WithURLs(func(id, name string) string { return "http://b/files/" + id + "/" + name })
	want := &Result{
		Files: []string{"http://b/files/f1/x.png", "http://b/files/f2/y.png", "http://old/legacy.png"},
		Outputs: map[string][]Output{
			"9":  {{URL: "http://b/files/f1/x.png", Filename: "x.png", FileID: "f1"}, {URL: "http://b/files/f2/y.png", Filename: "y.png", FileID: "f2"}},
			"12": {{URL: "http://old/legacy.png", Filename: "legacy.png"}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("WithURLs = %+v, want %+v", got, want)
	}
	if !reflect.DeepEqual(r, orig) {
		t.Errorf("WithURLs changed its receiver: %+v", r)
	}
}
