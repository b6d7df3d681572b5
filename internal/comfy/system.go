package comfy

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
)

// SystemStats is GET /system_stats: the host and its torch devices.
type SystemStats struct {
	// System describes the host and the ComfyUI build.
	System System
	// Devices lists the torch devices, primary first. v0.3.x reports exactly one.
	Devices []Device
}

// System is the "system" object of /system_stats.
type System struct {
	// OS is os.name ("posix", "nt") before v0.4.0 and sys.platform ("linux", ...) after.
	OS string
	// ComfyUIVersion is e.g. "0.3.65".
	ComfyUIVersion string
	// PythonVersion is Python's sys.version.
	PythonVersion string
	// PyTorchVersion is torch.__version__.
	PyTorchVersion string
	// RAMTotal and RAMFree are in bytes.
	RAMTotal, RAMFree int64
}

// Device is one torch device of /system_stats.
type Device struct {
	// Name is e.g. "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync" or "cpu".
	Name string
	// Type is e.g. "cuda" or "cpu".
	Type string
	// Index is the device index, nil for the CPU.
	Index *int
	// VRAMTotal and VRAMFree are in bytes (system RAM for the CPU device).
	VRAMTotal, VRAMFree int64
	// TorchVRAMTotal and TorchVRAMFree are what torch's allocator reserved, in bytes.
	TorchVRAMTotal, TorchVRAMFree int64
}

type systemStatsWire struct {
	System struct {
		OS             string  `json:"os"`
		ComfyUIVersion string  `json:"comfyui_version"`
		PythonVersion  string  `json:"python_version"`
		PyTorchVersion string  `json:"pytorch_version"`
		RAMTotal       flexInt `json:"ram_total"`
		RAMFree        flexInt `json:"ram_free"`
	} `json:"system"`
	Devices []struct {
		Name           string   `json:"name"`
		Type           string   `json:"type"`
		Index          *flexInt `json:"index"`
		VRAMTotal      flexInt  `json:"vram_total"`
		VRAMFree       flexInt  `json:"vram_free"`
		TorchVRAMTotal flexInt  `json:"torch_vram_total"`
		TorchVRAMFree  flexInt  `json:"torch_vram_free"`
	} `json:"devices"`
}

// SystemStats reads GET /system_stats. The health checker uses it as its probe.
func (c *Client) SystemStats(ctx context.Context) (*SystemStats, error) {
	var w systemStatsWire
	if err := c.call(ctx, "system stats", http.MethodGet, "/system_stats", nil, &w); err != nil {
		return nil, err
	}
	return w.convert(), nil
}

func (w *systemStatsWire) convert() *SystemStats {
	s := &SystemStats{System: System{
		OS:             w.System.OS,
		ComfyUIVersion: w.System.ComfyUIVersion,
		PythonVersion:  w.System.PythonVersion,
		PyTorchVersion: w.System.PyTorchVersion,
		RAMTotal:       int64(w.System.RAMTotal),
		RAMFree:        int64(w.System.RAMFree),
	}}
	for _, d := range w.Devices {
		dev := Device{
			Name: d.Name, Type: d.Type,
			VRAMTotal: int64(d.VRAMTotal), VRAMFree: int64(d.VRAMFree),
			TorchVRAMTotal: int64(d.TorchVRAMTotal), TorchVRAMFree: int64(d.TorchVRAMFree),
		}
		if d.Index != nil {
			i := int(*d.Index)
			dev.Index = &i
		}
		s.Devices = append(s.Devices, dev)
	}
	return s
}

// flexInt decodes any JSON number (integer or not) into an int64, truncating;
// other values (null, strings, ...) decode to 0 instead of failing the whole
// document.
type flexInt int64

// UnmarshalJSON implements json.Unmarshaler.
func (n *flexInt) UnmarshalJSON(b []byte) error {
	var i int64
	if json.Unmarshal(b, &i) == nil {
		*n = flexInt(i)
		return nil
	}
	var f float64
	switch {
	case json.Unmarshal(b, &f) != nil || math.IsNaN(f):
		*n = 0
	case f >= math.MaxInt64:
		*n = math.MaxInt64
	case f <= math.MinInt64:
		*n = math.MinInt64
	default:
		*n = flexInt(f)
	}
	return nil
}
