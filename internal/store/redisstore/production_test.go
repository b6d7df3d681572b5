package redisstore

import (
	"context"
	"strings"
	"testing"
)

func TestSettingWarning(t *testing.T) {
	aof := productionSettings[0]
	if w := settingWarning(aof, "yes"); w != nil {
		t.Errorf("appendonly yes: %v, want no warning", w)
	}
	w := settingWarning(aof, "no")
	if len(w) != 1 || !strings.Contains(w[0], `appendonly is "no", want "yes"`) {
		t.Errorf("appendonly no: %v, want one warning naming the setting and both values", w)
	}
}

// TestCheckProductionSettings compares the warnings with what the server
// reports, whatever its settings are.
func TestCheckProductionSettings(t *testing.T) {
	s := open(t)
	rdb := admin(t)
	var want []string
	for _, ps := range productionSettings {
		got, err := rdb.ConfigGet(t.Context(), ps.name).Result()
		mustOK(t, err)
		if got[ps.name] != ps.want {
			want = append(want, ps.name)
		}
	}
	warnings := s.CheckProductionSettings(t.Context())
	if len(warnings) != len(want) {
		t.Fatalf("warnings %q, want one for each of %v", warnings, want)
	}
	for i, name := range want {
		if !strings.Contains(warnings[i], name) {
			t.Errorf("warning %q does not name %s", warnings[i], name)
		}
	}
}

// TestCheckProductionSettingsNoConfig: a user that may not run CONFIG gets
// one warning saying the settings could not be checked.
func TestCheckProductionSettingsNoConfig(t *testing.T) {
	u := aclUser(t, "~*", "&*", "+@all", "-config")
	s, err := Open(context.Background(), u)
	mustOK(t, err)
	defer s.Close()
	w := s.CheckProductionSettings(t.Context())
	if len(w) != 1 || !strings.Contains(w[0], "could not be checked") {
		t.Errorf("warnings %q, want one saying the settings could not be checked", w)
	}
}
