package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestLiveKeysMatchTheDocs: the keys PUT /api/config may change are the
// ones docs/configuration.md lists under "What can change live", and no
// others.
func TestLiveKeysMatchTheDocs(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## What can change live\n")
	if start < 0 {
		t.Fatal(`docs/configuration.md has no "What can change live" section`)
	}
	section := doc[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	all := append(Keys(), "servers", "healthCheck.probeWorkflow") // the settings that are no scalar
	var documented []string
	code := regexp.MustCompile("`([^`]+)`")
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " | ")
		prefix := ""
		for _, m := range code.FindAllStringSubmatch(cell, -1) {
			key := m[1]
			if strings.HasPrefix(key, ".") { // ".timeout" after "healthCheck.interval"
				key = prefix + key
			}
			if i := strings.LastIndex(key, "."); i >= 0 {
				prefix = key[:i]
			}
			if section, ok := strings.CutSuffix(key, ".*"); ok {
				for _, k := range all {
					if strings.HasPrefix(k, section+".") {
						documented = append(documented, k)
					}
				}
				continue
			}
			if !slices.Contains(all, key) {
				t.Errorf("docs/configuration.md lists %q as live, which is no setting", key)
			}
			documented = append(documented, key)
		}
	}
	for _, k := range all {
		if live, doc := isLive(k), slices.Contains(documented, k); live != doc {
			t.Errorf("%s: live %v, but docs/configuration.md says %v", k, live, doc)
		}
	}
}
