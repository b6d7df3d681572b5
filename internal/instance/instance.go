// Package instance holds the instance domain: one ComfyUI server process,
// addressed as ip:port, and what the gateway knows of it at run time.
package instance

import (
	"net"
	"strconv"
	"time"
)

// ID builds the instance id of the contract: "ip:port".
func ID(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

// Instance is the static description of an instance, from the config.
type Instance struct {
	ID         string `json:"id"`
	ServerID   string `json:"serverId"`
	ServerName string `json:"serverName"`
	IP         string `json:"ip"`
	Port       int    `json:"port"`
	// Labels are the server's labels from the config ({gpu: a100}); nil for none.
	Labels map[string]string `json:"labels,omitempty"`
	// OutputDir is ComfyUI's output folder as the gateway sees it (the same
	// host or a shared volume), from the server's outputDir; "" when the
	// gateway reads outputs over HTTP. Never shown on the API.
	OutputDir string `json:"-"`
}

// BaseURL is the instance's HTTP root, e.g. http://127.0.0.1:8001.
func (i Instance) BaseURL() string { return "http://" + i.ID }

// State is what the gateway knows of an instance at run time; it is kept in
// the store so replicas and restarts share it.
type State struct {
	ID      string `json:"id"`
	Enabled bool   `json:"enabled"`
	Alive   bool   `json:"alive"`
	Busy    bool   `json:"busy"`
	// CurrentTaskID is the task running there, if any.
	CurrentTaskID string    `json:"currentTaskId"`
	LastHeartbeat time.Time `json:"lastHeartbeat"`
	LastError     string    `json:"lastError"`
	// QueueRemaining is ComfyUI's own queue length (pending + running), everyone's jobs.
	QueueRemaining int `json:"queueRemaining"`
	// Failures counts consecutive failed probes.
	Failures int    `json:"-"`
	Device   Device `json:"device"`
	// LoadedCheckpoint is the model the instance loaded last (warm-model placement).
	LoadedCheckpoint string `json:"loadedCheckpoint,omitempty"`
	// CatalogHash names the instance's node catalogue (catalog.Catalog.Hash)
	// as last read from its /object_info; "" until read.
	CatalogHash string `json:"catalogHash,omitempty"`
	// RunFailures counts the runs that failed in a row for the instance's
	// reasons, not the workflow's (a crash, out of memory, CUDA errors,
	// timeouts); a completed run resets it.
	RunFailures int `json:"runFailures"`
	// DrainReason says why the instance is disabled, when the gateway or an
	// operator said; "" otherwise.
	DrainReason string `json:"drainReason,omitempty"`
	// DrainedAt is when it was disabled with DrainReason.
	DrainedAt time.Time `json:"drainedAt"`
	// AutoDrained: the gateway disabled it after RunFailures reached the
	// limit; a probe re-enables it after the cooldown.
	AutoDrained bool `json:"autoDrained"`
}

// Device holds the facts /system_stats gives about the instance's primary device.
type Device struct {
	Name           string `json:"name,omitempty"`
	Type           string `json:"type,omitempty"`
	VRAMTotal      int64  `json:"vramTotal,omitempty"`
	VRAMFree       int64  `json:"vramFree,omitempty"`
	ComfyUIVersion string `json:"comfyuiVersion,omitempty"`
}
