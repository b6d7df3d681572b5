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

// cpuShare is where the machine's CPU time went over a window.
type cpuShare struct {
	at                     time.Time
	gateway, bench, busy   time.Duration
	gatewayErr, machineErr error
}

// sampleCPU reads the gateway's, the bench's and the machine's CPU time.
func (g *gateway) sampleCPU() cpuShare {
	s := cpuShare{at: time.Now()}
	s.gateway, s.gatewayErr = g.cpu()
	s.bench, _ = procCPU(os.Getpid())
	s.busy, s.machineErr = machineBusy()
	return s
}

// since says, in cores, how the CPU time between s0 and s was spent.
func (s cpuShare) since(s0 cpuShare) string {
	secs := s.at.Sub(s0.at).Seconds()
	if s.machineErr != nil || s0.machineErr != nil || secs <= 0 {
		return "CPU shares not available"
	}
	gw, bench, busy := (s.gateway-s0.gateway).Seconds()/secs, (s.bench-s0.bench).Seconds()/secs, (s.busy-s0.busy).Seconds()/secs
	return fmt.Sprintf("machine busy %.2f of %d cores: gateway %.2f, bench process (instances, clients) %.2f, other processes (Redis when used) %.2f",
		busy, runtime.NumCPU(), gw, bench, max(busy-gw-bench, 0))
}
