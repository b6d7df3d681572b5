package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on Linux).
const clockTick = 10 * time.Millisecond

// procCPU reads a process's user + system CPU time from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime + stime from the text of a /proc/<pid>/stat.
func parseStatCPU(b []byte) (time.Duration, error) {
	// The command name may hold spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bench: unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("bench: short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("bench: /proc stat: %w", err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// procMem reads VmRSS and VmHWM (peak RSS) from /proc/<pid>/status, in bytes.
func procMem(pid int) (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: /proc status %s: %w", k, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if rss == 0 {
		return 0, 0, errors.New("bench: no VmRSS in /proc status")
	}
	return rss, peak, sc.Err()
}

// machineBusy reads the CPU time all processes spent busy (not idle or
// waiting for I/O) from /proc/stat, summed over the cores.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseStatBusy(b)
}

// parseStatBusy reads the busy time from the "cpu" line of /proc/stat.
func parseStatBusy(b []byte) (time.Duration, error) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, errors.New("bench: unexpected /proc/stat format")
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: /proc/stat: %w", err)
		}
		// Fields: user nice system idle iowait irq softirq steal guest guest_nice;
		// guest time is already counted in user.
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	return time.Duration(busy) * clockTick, nil
}

// cpuMeter reads the CPU time of the processes a scenario measures and of
// the whole machine.
type cpuMeter struct {
	// gateway is the gateway child process; nil when there is none.
	gateway *gateway
	// comfy are the ComfyUI server processes on this machine; none when the
	// instances are simulated in the bench process or run elsewhere.
	comfy []int
	// storage are the processes of a file store's server on this machine
	// (the S3 server of the storage scenario); none elsewhere.
	storage []int
}

// cpuSample is the CPU time used so far, read at one moment.
type cpuSample struct {
	at                                   time.Time
	gateway, comfy, storage, bench, busy time.Duration
	comfyErr, machineErr                 error
}

// sample reads the CPU times now.
func (m cpuMeter) sample() cpuSample {
	s := cpuSample{at: time.Now()}
	if m.gateway != nil {
		s.gateway, _ = m.gateway.cpu()
	}
	for _, pid := range m.comfy {
		d, err := procCPU(pid)
		s.comfy += d
		s.comfyErr = errors.Join(s.comfyErr, err)
	}
	for _, pid := range m.storage {
		d, _ := procCPU(pid)
		s.storage += d
	}
	s.bench, _ = procCPU(os.Getpid())
	s.busy, s.machineErr = machineBusy()
	return s
}

// sampleCPU reads the gateway's, the bench's and the machine's CPU time.
func (g *gateway) sampleCPU() cpuSample { return cpuMeter{gateway: g}.sample() }

// cpuUse is the CPU time spent between two samples.
type cpuUse struct {
	wall                                 time.Duration
	gateway, comfy, storage, bench, busy time.Duration
	// comfyOK and machineOK say whether comfy and busy could be read at
	// both ends.
	comfyOK, machineOK bool
}

// sub is the CPU time spent from s0 to s.
func (s cpuSample) sub(s0 cpuSample) cpuUse {
	return cpuUse{
		wall: s.at.Sub(s0.at), gateway: s.gateway - s0.gateway, comfy: s.comfy - s0.comfy,
		storage: s.storage - s0.storage, bench: s.bench - s0.bench, busy: s.busy - s0.busy,
		comfyOK:   s.comfyErr == nil && s0.comfyErr == nil,
		machineOK: s.machineErr == nil && s0.machineErr == nil,
	}
}

// since says, in cores, how the CPU time between s0 and s was spent.
func (s cpuSample) since(s0 cpuSample) string { return s.sub(s0).String() }

// add sums two uses, as one longer window; the zero cpuUse adds nothing.
func (u cpuUse) add(v cpuUse) cpuUse {
	if u == (cpuUse{}) {
		return v
	}
	return cpuUse{
		wall: u.wall + v.wall, gateway: u.gateway + v.gateway, comfy: u.comfy + v.comfy,
		storage: u.storage + v.storage, bench: u.bench + v.bench, busy: u.busy + v.busy,
		comfyOK: u.comfyOK && v.comfyOK, machineOK: u.machineOK && v.machineOK,
	}
}

// other is the busy time of every other process on the machine: the
// machine's busy time less the measured processes'.
func (u cpuUse) other() time.Duration {
	return max(u.busy-u.gateway-u.comfy-u.storage-u.bench, 0)
}

// cores is d spread over the window, in cores.
func (u cpuUse) cores(d time.Duration) float64 {
	if u.wall <= 0 {
		return 0
	}
	return d.Seconds() / u.wall.Seconds()
}

func (u cpuUse) String() string {
	if !u.machineOK || u.wall <= 0 {
		return "CPU shares not available"
	}
	comfy := ""
	if u.comfy > 0 {
		comfy = fmt.Sprintf(", ComfyUI %.2f", u.cores(u.comfy))
	}
	return fmt.Sprintf("machine busy %.2f of %d cores: gateway %.2f%s, bench process (instances, clients) %.2f, other processes (Redis when used) %.2f",
		u.cores(u.busy), runtime.NumCPU(), u.cores(u.gateway), comfy, u.cores(u.bench), u.cores(u.other()))
}

// split says in cores how a window's CPU time went, for the overhead
// table; ComfyUI's share when comfy (its processes were measured).
func (u cpuUse) split(comfy bool) string {
	if !u.machineOK || u.wall <= 0 {
		return "CPU shares not available"
	}
	share := ""
	if comfy {
		share = fmt.Sprintf(", ComfyUI %.2f", u.cores(u.comfy))
	}
	return fmt.Sprintf("machine busy %.2f of %d cores: gateway %.2f%s, bench process %.2f, other processes %.2f",
		u.cores(u.busy), runtime.NumCPU(), u.cores(u.gateway), share, u.cores(u.bench), u.cores(u.other()))
}
