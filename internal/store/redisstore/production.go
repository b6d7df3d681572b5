package redisstore

import (
	"context"
	"fmt"
)

// productionSetting is a Redis setting the store depends on.
type productionSetting struct {
	name, want, why string
}

// productionSettings are checked by CheckProductionSettings; docs/redis.md
// explains them.
var productionSettings = []productionSetting{
	{"appendonly", "yes", "without the append-only file a Redis restart loses every task, lease and file record written since the last snapshot"},
	{"maxmemory-policy", "noeviction", "any other policy lets Redis silently delete tasks, queue entries and leases when memory runs short"},
}

// CheckProductionSettings reads the server's persistence and eviction
// settings and returns one human warning per setting that puts the
// gateway's data at risk, or one warning saying they could not be checked
// (CONFIG disabled or renamed, as on some managed services). No warnings
// means the settings are as docs/redis.md recommends.
func (s *Store) CheckProductionSettings(ctx context.Context) []string {
	var warnings []string
	for _, ps := range productionSettings {
		got, err := s.rdb.ConfigGet(ctx, ps.name).Result()
		value, ok := got[ps.name]
		if err != nil || !ok {
			reason := "the server does not report it"
			if err != nil {
				reason = translate(err).Error()
			}
			return []string{fmt.Sprintf("redis settings could not be checked (CONFIG GET %s: %s); "+
				"make sure the server runs with appendonly yes and maxmemory-policy noeviction", ps.name, reason)}
		}
		warnings = append(warnings, settingWarning(ps, value)...)
	}
	return warnings
}

// settingWarning is the warning for a setting's value, if any.
func settingWarning(ps productionSetting, value string) []string {
	if value == ps.want {
		return nil
	}
	return []string{fmt.Sprintf("redis %s is %q, want %q: %s", ps.name, value, ps.want, ps.why)}
}
