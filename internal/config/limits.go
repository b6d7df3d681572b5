package config

// Limits bound what one submission costs and what one user holds (the
// "limits" section). Size limits apply to everyone; quotas (the PerUser
// ones) to the role "user" only: admins run the fleet, and change the
// quotas anyway. Every key is live (PUT /api/config).
type Limits struct {
	// MaxNodes is the most nodes a task's workflow may have (413 beyond).
	// Default 5000; 1..1000000.
	MaxNodes int `yaml:"maxNodes" json:"maxNodes"`
	// MaxTaskBytes limits the body of POST /api/tasks (413 beyond); the
	// smaller of it and server.maxBodyBytes applies. Default 8 MiB;
	// 1 KiB..1 GiB.
	MaxTaskBytes int64 `yaml:"maxTaskBytes" json:"maxTaskBytes"`
	// MaxPendingPerUser is the most pending tasks a user may have; one more
	// is a 429 quota_exceeded. Default 1000; 1..10000000, or -1 for no
	// quota.
	MaxPendingPerUser int `yaml:"maxPendingPerUser" json:"maxPendingPerUser"`
	// MaxStoredBytesPerUser bounds the bytes of a user's files (uploads and
	// task outputs): an upload past it, or a task submitted at or past it,
	// is a 429 quota_exceeded. Outputs of tasks already submitted are
	// always kept. Default 10 GiB; 1..2^50 (1 PiB), or -1 for no quota.
	MaxStoredBytesPerUser int64 `yaml:"maxStoredBytesPerUser" json:"maxStoredBytesPerUser"`
}

// NoQuota is the value of a PerUser limit that turns the quota off.
const NoQuota = -1

// Ranges of the limits.
const (
	maxMaxNodes       = 1_000_000
	minMaxTaskBytes   = 1 << 10
	maxMaxTaskBytes   = 1 << 30
	maxMaxPending     = 10_000_000
	maxMaxStoredBytes = 1 << 50
)

func (l *Limits) withDefaults() {
	orDefault(&l.MaxNodes, 5000)
	orDefault(&l.MaxTaskBytes, 8<<20)
	orDefault(&l.MaxPendingPerUser, 1000)
	orDefault(&l.MaxStoredBytesPerUser, 10<<30)
}

func (l Limits) validate(v *checker) {
	if l.MaxNodes < 1 || l.MaxNodes > maxMaxNodes {
		v.add("limits.maxNodes", "must be between 1 and %d", maxMaxNodes)
	}
	if l.MaxTaskBytes < minMaxTaskBytes || l.MaxTaskBytes > maxMaxTaskBytes {
		v.add("limits.maxTaskBytes", "must be between %d and %d bytes", minMaxTaskBytes, maxMaxTaskBytes)
	}
	if l.MaxPendingPerUser != NoQuota && (l.MaxPendingPerUser < 1 || l.MaxPendingPerUser > maxMaxPending) {
		v.add("limits.maxPendingPerUser", "must be between 1 and %d, or -1 for no quota", maxMaxPending)
	}
	if l.MaxStoredBytesPerUser != NoQuota && (l.MaxStoredBytesPerUser < 1 || l.MaxStoredBytesPerUser > maxMaxStoredBytes) {
		v.add("limits.maxStoredBytesPerUser", "must be between 1 and %d bytes, or -1 for no quota", int64(maxMaxStoredBytes))
	}
}
