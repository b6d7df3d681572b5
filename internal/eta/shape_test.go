package eta

import "testing"

func TestShapeIgnoresValues(t *testing.T) {
	a := `{"1":{"class_type":"EmptyImage","inputs":{"width":16,"color":1}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"a"}}}`
	b := `{"2":{"class_type":"SaveImage","inputs":{"filename_prefix":"other","images":["1",0]}},"1":{"class_type":"EmptyImage","inputs":{"width":512,"color":9,"height":8}}}`
	cases := map[string]struct {
		other string
		same  bool
	}{
		"other values and order":     {b, true},
		"another class":              {`{"1":{"class_type":"LoadImage","inputs":{"width":16}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0]}}}`, false},
		"another link":               {`{"1":{"class_type":"EmptyImage","inputs":{}},"2":{"class_type":"SaveImage","inputs":{"images":["1",1]}}}`, false},
		"no link":                    {`{"1":{"class_type":"EmptyImage","inputs":{}},"2":{"class_type":"SaveImage","inputs":{"images":"x"}}}`, false},
		"another node id":            {`{"1":{"class_type":"EmptyImage","inputs":{}},"3":{"class_type":"SaveImage","inputs":{"images":["1",0]}}}`, false},
		"a dangling link is a value": {`{"1":{"class_type":"EmptyImage","inputs":{"x":["9",0]}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0]}}}`, true},
	}
	sa := mustShape(t, a)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := mustShape(t, c.other) == sa; got != c.same {
				t.Errorf("same shape = %v, want %v", got, c.same)
			}
		})
	}
}

// TestShapeOfRequirement: a requirement has the shape of its workflow.
func TestShapeOfRequirement(t *testing.T) {
	wf := `{"1":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":"x.safetensors"}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"a"}}}`
	req := `{"prompt":{"1":{"class":"CheckpointLoaderSimple","inputs":{"ckpt_name":"x.safetensors"}},"2":{"class":"SaveImage","inputs":{"images":["1",0],"filename_prefix":[]}}},"requires":{"gpu":"a100"}}`
	got, err := ShapeOfRequirement([]byte(req))
	if err != nil {
		t.Fatal(err)
	}
	if want := mustShape(t, wf); got != want {
		t.Errorf("shape of requirement = %s, want the workflow's %s", got, want)
	}
	if _, err := ShapeOfWorkflow([]byte(`[1]`)); err == nil {
		t.Error("shape of a workflow that is not an object: no error")
	}
}

func mustShape(t *testing.T, wf string) string {
	t.Helper()
	s, err := ShapeOfWorkflow([]byte(wf))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
