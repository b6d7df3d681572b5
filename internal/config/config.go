// Package config holds ComfyFleet's one configuration struct, its documented
// defaults, loading from YAML with environment overrides, validation whose
// errors name the field, and the runtime changes made through
// PUT /api/config.
//
// # Sources and precedence
//
// From lowest to highest:
//
//  1. defaults (Default, applied by WithDefaults to every field left zero;
//     zero always means "the default", in every source);
//  2. the YAML file (Load): strict, an unknown key is an error naming it;
//  3. the environment (Load): COMFYFLEET_<KEY> for every scalar setting, the
//     key's dotted path in upper snake case, "." becoming "_":
//     server.publicBaseUrl is COMFYFLEET_SERVER_PUBLIC_BASE_URL,
//     healthCheck.interval is COMFYFLEET_HEALTH_CHECK_INTERVAL, dataDir is
//     COMFYFLEET_DATA_DIR (EnvVar gives the name, Keys lists the keys). An
//     empty value is ignored. COMFYFLEET_ADMIN_PASSWORD is accepted for
//     auth.adminPassword, COMFYFLEET_CONFIG is left to main; any other unknown COMFYFLEET_ variable is an error, so a
//     typo does not go unnoticed;
//  4. command-line flags, applied by main with Set and the same dotted keys;
//  5. the runtime document persisted by PUT /api/config (ApplyRuntime): it
//     holds only the live-tunable keys an operator changed through the API
//     (Config.RuntimeKeys), and for those keys it wins over everything above,
//     because a change made through the API is expected to survive a restart.
//
// So main does:
//
//	cfg, err := config.Load(path, os.Environ()) // file + environment
//	cfg.Set("server.listen", ":8080")           // each flag given
//	cfg.WithDefaults()
//	err = cfg.Validate()
//	live, err := config.ApplyRuntime(cfg, doc)  // doc from store.ConfigGet
//
// Load leaves defaults to WithDefaults on purpose: a flag such as --data-dir
// set after Load must still move the paths derived from it.
//
// Once a key is in the runtime document, editing it in the file (or the
// environment) has no effect: GET /api/config lists such keys in
// "runtimeOverrides". To go back to the file, send PUT /api/config
// {"reset":true} (IsReset; the app then persists an empty document and
// returns to its start-up config). A start-up flag that does the same
// (suggested: --reset-runtime-config) skips ApplyRuntime and persists an
// empty document.
package config

import (
	"net/netip"
	"time"
)

// Config is the whole gateway configuration. YAML keys are camelCase, like
// the API. Every field documents its default.
type Config struct {
	Server      HTTP        `yaml:"server" json:"server"`
	Auth        Auth        `yaml:"auth" json:"auth"`
	Store       Store       `yaml:"store" json:"store"`
	Servers     []Server    `yaml:"servers" json:"servers"`
	HealthCheck HealthCheck `yaml:"healthCheck" json:"healthCheck"`
	Files       Files       `yaml:"files" json:"files"`
	Scheduler   Scheduler   `yaml:"scheduler" json:"scheduler"`
	Limits      Limits      `yaml:"limits" json:"limits"`
	Metrics     Metrics     `yaml:"metrics" json:"metrics"`
	Log         Log         `yaml:"log" json:"log"`
	Webhooks    Webhooks    `yaml:"webhooks" json:"webhooks"`
	Retention   Retention   `yaml:"retention" json:"retention"`
	// DataDir holds the SQLite database, the files and generated secrets. Default "./data".
	DataDir string `yaml:"dataDir" json:"dataDir"`
	// Demo enables the well-known demo login admin/admin123 (when
	// auth.users is empty). Default false. Not read from the file: only the
	// key "demo" of Set (--set demo=true) or COMFYFLEET_DEMO turn it on.
	Demo bool `yaml:"-" json:"-"`
	// RuntimeKeys lists the keys held by the runtime document of
	// PUT /api/config, which override the file (see the package comment).
	// Merge and ApplyRuntime maintain it; GET /api/config shows it.
	RuntimeKeys []string `yaml:"-" json:"runtimeOverrides,omitempty"`
	// RuntimeIgnored, when set, says why the persisted runtime document was
	// not applied at start-up (it no longer validates with this config: a
	// file edit, or limits tightened by an upgrade). The app logs it and
	// GET /api/config shows it; the next PUT /api/config replaces the
	// document and clears it.
	RuntimeIgnored string `yaml:"-" json:"runtimeOverridesIgnored,omitempty"`
}

// HTTP is the API listener (the "server" section).
type HTTP struct {
	// Listen is the address to bind. Default ":3000".
	Listen string `yaml:"listen" json:"listen"`
	// PublicBaseURL prefixes file URLs. Default "http://localhost:3000" (derived from Listen).
	PublicBaseURL string `yaml:"publicBaseUrl" json:"publicBaseUrl"`
	// MaxBodyBytes limits JSON request bodies. Default 10 MiB.
	MaxBodyBytes int64 `yaml:"maxBodyBytes" json:"maxBodyBytes"`
	// ReplicaID names this gateway process among replicas. Default: generated
	// and kept in DataDir, so a restart resumes its own leases.
	ReplicaID string `yaml:"replicaId" json:"replicaId"`
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout Duration `yaml:"readHeaderTimeout" json:"readHeaderTimeout"`
	// ReadTimeout bounds reading a whole request, body included; uploads
	// get TransferTimeout instead. Default 60s.
	ReadTimeout Duration `yaml:"readTimeout" json:"readTimeout"`
	// WriteTimeout bounds writing a response; file downloads get
	// TransferTimeout instead, and /ws sessions have no such bound.
	// Default 60s.
	WriteTimeout Duration `yaml:"writeTimeout" json:"writeTimeout"`
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request. Default 60s.
	IdleTimeout Duration `yaml:"idleTimeout" json:"idleTimeout"`
	// TransferTimeout bounds one upload's body (POST /api/files/upload) and
	// one file download (GET /files/...). Default 1h.
	TransferTimeout Duration `yaml:"transferTimeout" json:"transferTimeout"`
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed: behind one, the client address (the login limit's key) is
	// the rightmost X-Forwarded-For address that is not a trusted proxy.
	// Default none: the TCP peer is the client.
	TrustedProxies Prefixes `yaml:"trustedProxies" json:"trustedProxies"`
	// WSMaxConns bounds the /ws connections of this gateway process; one
	// more is refused with 429. Default 10000.
	WSMaxConns int `yaml:"wsMaxConns" json:"wsMaxConns"`
	// WSMaxConnsPerUser bounds the /ws connections of one user on this
	// gateway process, in the same way. Default 32.
	WSMaxConnsPerUser int `yaml:"wsMaxConnsPerUser" json:"wsMaxConnsPerUser"`
	// ShutdownGrace bounds a shutdown (SIGTERM, SIGINT): the gateway stops
	// claiming, readiness turns false, running tasks may finish, and the
	// process exits within this long, handing back what is left. Default
	// 30s; 1s to 24h.
	ShutdownGrace Duration `yaml:"shutdownGrace" json:"shutdownGrace"`
}

// Auth configures logins and tokens.
type Auth struct {
	// Users that may log in. Default: one "admin" whose password comes from
	// COMFYFLEET_ADMIN_PASSWORD or is generated and printed at first start.
	Users []User `yaml:"users" json:"users"`
	// TokenTTL is how long a token lasts. Default 24h.
	TokenTTL Duration `yaml:"tokenTtl" json:"tokenTtl"`
	// Secret signs tokens (HS256). Default: generated once and kept in DataDir.
	Secret string `yaml:"secret" json:"secret"`
	// LoginRateLimit is how many failed logins per address and username are
	// allowed per minute before 429. Default 5.
	LoginRateLimit int `yaml:"loginRateLimit" json:"loginRateLimit"`
	// AdminPassword is the password of the default "admin" when Users is
	// empty; prefer COMFYFLEET_ADMIN_PASSWORD to writing it in the file. It
	// is never shown by GET /api/config nor persisted. Default: generated at
	// first start and its hash kept in DataDir.
	AdminPassword string `yaml:"adminPassword" json:"-"`
}

// User is one login.
type User struct {
	// Username logs in; unique.
	Username string `yaml:"username" json:"username"`
	// Role is "admin" or "user".
	Role string `yaml:"role" json:"role"`
	// PasswordHash is a bcrypt hash ("comfyfleet hash-password" prints one).
	PasswordHash string `yaml:"passwordHash" json:"passwordHash"`
}

// Store selects the persistence backend.
type Store struct {
	// Driver is "sqlite" (default) or "redis".
	Driver string `yaml:"driver" json:"driver"`
	// Path is the SQLite file. Default "<dataDir>/comfyfleet.db".
	Path string `yaml:"path" json:"path"`
	// Sync is SQLite's durability: "normal" (default: WAL fsynced at
	// checkpoints; nothing is lost when the process crashes or is killed, a
	// power loss may drop the last commits) or "full" (every commit fsynced;
	// nothing is lost on power loss either, at a large cost in write speed).
	// The file store follows it: files are fsynced only with "full".
	Sync string `yaml:"sync" json:"sync"`
	// URL is the Redis URL (redis:// or rediss://, with password and db). Default "redis://127.0.0.1:6379/0".
	URL string `yaml:"url" json:"url"`
	// Prefix namespaces every Redis key. Default "comfyfleet:".
	Prefix string `yaml:"prefix" json:"prefix"`
	// LeaseTTL is how long a replica's lease on an instance (and the health
	// leader's) lasts without renewal: a dead replica's instances are
	// adopted that long after it died, and a replica cut off from the store
	// stops driving them when it runs out. Renewed every third of it.
	// Default 15000 ms; 3000 to 300000.
	LeaseTTL Millis `yaml:"leaseTtl" json:"leaseTtl"`
}

// Server is one machine in the seed's instance list; each port is one
// ComfyUI instance.
type Server struct {
	// ID names the server (serverId of its instances); unique.
	ID string `yaml:"id" json:"id"`
	// Name is shown as serverName. Default: the ID.
	Name string `yaml:"name" json:"name"`
	// IP is the address of the machine: an IP address or a host name.
	IP string `yaml:"ip" json:"ip"`
	// Ports is a list of ports, or a "8001-8008" range string.
	Ports Ports `yaml:"ports" json:"ports"`
	// Labels describe the server's instances ({gpu: a100, pool: video});
	// a task's "requires" selects instances by them. Default none.
	Labels Labels `yaml:"labels,omitempty" json:"labels,omitempty"`
	// OutputDir is ComfyUI's output folder (its --output-directory) as the
	// gateway can read it, when the gateway runs on the same host or mounts
	// it: outputs are then copied from there instead of over /view. An
	// absolute path; "{port}" in it stands for each instance's port. Set in
	// the config file only: the API neither shows nor changes it, and a
	// server replaced through PUT /api/config keeps the outputDir of the
	// server with the same id. Default "": outputs over /view.
	OutputDir string `yaml:"outputDir,omitempty" json:"-"`
}

// HealthCheck configures the probe loop. Durations are milliseconds in JSON
// and YAML, as in the seed ("interval": 30000).
type HealthCheck struct {
	// Interval between probes of each instance. Default 30000 ms.
	Interval Millis `yaml:"interval" json:"interval"`
	// Timeout of one probe. Default 5000 ms.
	Timeout Millis `yaml:"timeout" json:"timeout"`
	// FailureThreshold consecutive failures turn an instance alive:false. Default 2.
	FailureThreshold int `yaml:"failureThreshold" json:"failureThreshold"`
	// DrainAfterFailures consecutive runs failed for the instance's own
	// reasons (a crash, out of memory, CUDA errors, timeouts) disable it
	// automatically; DrainOff turns that off. Default 3.
	DrainAfterFailures int `yaml:"drainAfterFailures" json:"drainAfterFailures"`
	// DrainCooldown is how long an automatically drained instance rests
	// before a passing probe enables it again. Default 300000 ms.
	DrainCooldown Millis `yaml:"drainCooldown" json:"drainCooldown"`
	// ProbeWorkflow is the API-format workflow an automatically drained
	// instance must run to completion, after its cooldown, before it is
	// enabled again; its literal seed and noise_seed inputs get a fresh
	// value each time so ComfyUI's cache cannot answer it. Default: none
	// set, and the gateway runs a small image (EmptyImage into
	// PreviewImage, a new color each time) that needs no model.
	ProbeWorkflow map[string]any `yaml:"probeWorkflow,omitempty" json:"probeWorkflow,omitempty"`
	// ProbeTimeout bounds one run of the probe workflow. Default 60000 ms.
	ProbeTimeout Millis `yaml:"probeTimeout" json:"probeTimeout"`
}

// DrainOff is the healthCheck.drainAfterFailures that turns the automatic
// drain off.
const DrainOff = -1

// Files configures the file store.
type Files struct {
	// Driver is where file bytes are kept: "disk" (default: in Dir) or
	// "s3" (an S3-compatible object store, see S3).
	Driver string `yaml:"driver" json:"driver"`
	// Dir holds file bytes with the disk driver. Default "<dataDir>/files".
	Dir string `yaml:"dir" json:"dir"`
	// S3 is the object store of the s3 driver.
	S3 S3 `yaml:"s3" json:"s3"`
	// MaxUploadBytes limits one upload. Default 100 MiB.
	MaxUploadBytes int64 `yaml:"maxUploadBytes" json:"maxUploadBytes"`
	// MaxOutputBytes limits one output file copied from an instance; a
	// larger one fails its task (output_failed). Default 4 GiB.
	MaxOutputBytes int64 `yaml:"maxOutputBytes" json:"maxOutputBytes"`
	// OutputTimeout bounds the copy of one output file from an instance
	// (a /view that trickles or stalls). Default 600000 ms; 1000 to 86400000.
	OutputTimeout Millis `yaml:"outputTimeout" json:"outputTimeout"`
}

// File drivers (files.driver).
const (
	FilesDisk = "disk"
	FilesS3   = "s3"
)

// S3 is the object store of files.driver "s3". Its credentials are not
// settings: they come from the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or a shared credentials file
// (CredentialsFile), never from the command line.
type S3 struct {
	// Endpoint is the service's URL, scheme, host and port, no path
	// ("https://s3.eu-west-1.amazonaws.com", "http://127.0.0.1:8333").
	// Required with the s3 driver.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// Bucket holds the files; it must exist. Required with the s3 driver.
	Bucket string `yaml:"bucket" json:"bucket"`
	// Prefix is put before every object key ("comfyfleet/"). Default none.
	Prefix string `yaml:"prefix" json:"prefix"`
	// Region signs requests. Default "us-east-1".
	Region string `yaml:"region" json:"region"`
	// CredentialsFile is an AWS shared credentials file (INI) to read the
	// keys from, instead of the environment. Default none.
	CredentialsFile string `yaml:"credentialsFile" json:"credentialsFile"`
	// Profile is the credentials file's profile. Default $AWS_PROFILE, else "default".
	Profile string `yaml:"profile" json:"profile"`
	// Serve is how GET /files/... answers: "proxy" (default: the gateway
	// streams the bytes, Range included) or "redirect" (a 302 to a
	// presigned URL of the object store, which clients must reach).
	Serve string `yaml:"serve" json:"serve"`
	// LinkTTL is how long a presigned URL of "redirect" works. Default 15m;
	// 1m to 168h (the S3 maximum).
	LinkTTL Duration `yaml:"linkTtl" json:"linkTtl"`
}

// Ways of serving S3 files (files.s3.serve).
const (
	ServeProxy    = "proxy"
	ServeRedirect = "redirect"
)

// Scheduler configures task placement and runs.
type Scheduler struct {
	// TaskTimeout bounds one run. Default 600000 ms (10 minutes).
	TaskTimeout Millis `yaml:"taskTimeout" json:"taskTimeout"`
	// MaxTaskTimeout bounds the timeout a task may ask for (and
	// TaskTimeout): a larger one is refused with 400. Default 86400000 ms
	// (24 hours).
	MaxTaskTimeout Millis `yaml:"maxTaskTimeout" json:"maxTaskTimeout"`
	// MaxAttempts bounds runs of one task after lost instances. Default 3.
	MaxAttempts int `yaml:"maxAttempts" json:"maxAttempts"`
	// PriorityAging is the wait worth one priority point: a task is passed
	// by higher-priority tasks submitted after it for at most (difference ×
	// PriorityAging). Applies to tasks submitted from then on. Default
	// 60000 ms.
	PriorityAging Millis `yaml:"priorityAging" json:"priorityAging"`
	// Placement is "warm" (a free instance prefers a task for the model it
	// has loaded, within WarmWindow) or "fifo" (the next task in order).
	// Default "warm".
	Placement string `yaml:"placement" json:"placement"`
	// WarmWindow bounds warm placement: a task for the loaded model may go
	// before tasks submitted at most this long before it (at equal
	// priority). Default 30000 ms; "fifo" placement turns it off.
	WarmWindow Millis `yaml:"warmWindow" json:"warmWindow"`
	// Prefetch is how many prompts the gateway places in an instance's own
	// queue behind the one it runs, so ComfyUI starts the next the moment
	// the current one ends. 0 gives each instance one prompt at a time.
	// Default 1; 0 to 8.
	Prefetch *int `yaml:"prefetch" json:"prefetch"`
	// InterruptGrace is how long an interrupted prompt (timeout, cancel)
	// may stay on its instance before its task ends anyway; the instance is
	// then held from new work until it lets go of the prompt. Default 30000
	// ms; 1000 to 3600000.
	InterruptGrace Millis `yaml:"interruptGrace" json:"interruptGrace"`
}

// The placement policies of Scheduler.Placement.
const (
	PlacementWarm = "warm"
	PlacementFIFO = "fifo"
)

// Metrics configures /metrics (Prometheus text format).
type Metrics struct {
	// Listen, when set, serves /metrics on this address of its own, without
	// authentication: bind it to an interface only operators reach. When
	// empty, /metrics is served on the API's listener to admin tokens only.
	// Default "".
	Listen string `yaml:"listen" json:"listen"`
	// Pprof serves the Go profiler (/debug/pprof/, never its cmdline page)
	// on Listen too, without authentication. Default false.
	Pprof bool `yaml:"pprof" json:"pprof"`
}

// Log configures the gateway's log lines (on stderr).
type Log struct {
	// Format is "text" (key=value pairs, the default) or "json" (one
	// object per line, for log collectors).
	Format string `yaml:"format" json:"format"`
	// Level is the least severe level written: "debug", "info" (default),
	// "warn" or "error". Request lines are info (the probes' debug).
	Level string `yaml:"level" json:"level"`
}

// The log formats of Log.Format.
const (
	LogText = "text"
	LogJSON = "json"
)

// Webhooks configures the delivery of task events to the URLs users
// subscribe (docs/webhooks.md). Every key needs a restart.
type Webhooks struct {
	// AllowPrivate lets webhooks reach private, loopback and link-local
	// addresses (a receiver on the gateway's own network). Default false:
	// only public addresses.
	AllowPrivate bool `yaml:"allowPrivate" json:"allowPrivate"`
	// AllowedNetworks are networks webhooks may reach although they are not
	// public, for example "10.1.2.0/24". Default none.
	AllowedNetworks Prefixes `yaml:"allowedNetworks" json:"allowedNetworks"`
	// Timeout bounds one delivery attempt. Default 10s, 1s..2m.
	Timeout Millis `yaml:"timeout" json:"timeout"`
	// RetryFor is how long a delivery is retried after its event. Default
	// 24h, 1s..30 days.
	RetryFor Duration `yaml:"retryFor" json:"retryFor"`
	// MinBackoff is the wait after a first failed attempt, doubled after
	// each one. Default 5s, 10ms..1h.
	MinBackoff Millis `yaml:"minBackoff" json:"minBackoff"`
	// MaxBackoff caps the wait between attempts. Default 1h, minBackoff..24h.
	MaxBackoff Millis `yaml:"maxBackoff" json:"maxBackoff"`
	// Workers bounds the attempts each replica has in flight. Default 16, 1..1024.
	Workers int `yaml:"workers" json:"workers"`
}

// Retention prunes finished tasks and files by age (the "retention"
// section). A pinned task or file is kept whatever its age. Every key is
// live (PUT /api/config).
type Retention struct {
	// Tasks is how long a finished task (completed, failed, cancelled) is
	// kept after it finished; its output files go with it. Default 0: for
	// good. 0, or 1h to 87600h (10 years).
	Tasks Duration `yaml:"tasks" json:"tasks"`
	// Files is how long a file (an upload or a task output) is kept after
	// it was stored, whether or not its task is kept. Default 0: for good.
	// 0, or 1h to 87600h.
	Files Duration `yaml:"files" json:"files"`
	// Interval is the wait between two pruning passes. Default 60000 ms;
	// 1000 to 86400000.
	Interval Millis `yaml:"interval" json:"interval"`
	// Batch is how many tasks or files one step of a pass deletes before
	// it pauses, so the store serves the dispatcher in between. Default
	// 100; 1 to 1000.
	Batch int `yaml:"batch" json:"batch"`
}

// Duration is a time.Duration written as a Go duration string ("24h").
type Duration time.Duration

// Millis is a time.Duration written as integer milliseconds (30000). A Go
// duration string ("30s") is accepted too.
type Millis time.Duration

// Prefixes is a list of IP networks in CIDR notation ("10.0.0.0/8",
// "fd00::/8"); a bare address is one host. It is written as a list, and
// also accepts a comma-separated string (for the environment and --set).
type Prefixes []netip.Prefix

// Ports is a list of ports. It is written as a list, and also accepts one
// port, a "8001-8008" range, or a comma-separated mix ("8001,8003-8004").
type Ports []int
