package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// summary is the distribution of recorded samples.
type summary struct {
	n                  int
	p50, p90, p99, max time.Duration
}

// summarize sorts samples (in place) and takes nearest-rank percentiles.
func summarize(samples []time.Duration) summary {
	if len(samples) == 0 {
		return summary{}
	}
	slices.Sort(samples)
	return summary{n: len(samples), p50: percentile(samples, 50), p90: percentile(samples, 90),
		p99: percentile(samples, 99), max: samples[len(samples)-1]}
}

// percentile is the nearest-rank p-th percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// itoa formats n with thousands separators: 1,000,000.
func itoa(n int) string {
	s := strconv.Itoa(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// fmtDur formats a duration with three significant digits in a readable unit.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + " ms"
	default:
		return sig3(d.Seconds()) + " s"
	}
}

// fmtMs formats a duration in milliseconds, for columns that compare.
func fmtMs(d time.Duration) string {
	return sig3(float64(d)/float64(time.Millisecond)) + " ms"
}

// sig3 prints x with three significant digits (more for large integers).
func sig3(x float64) string {
	switch {
	case x >= 1000:
		return itoa(int(math.Round(x)))
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

// fmtRate formats n events over d as a per-second rate.
func fmtRate(n int, d time.Duration) string {
	if d <= 0 {
		return "n/a"
	}
	return sig3(float64(n) / d.Seconds())
}

// fmtMiB formats bytes as MiB.
func fmtMiB(b int64) string {
	return sig3(float64(b)/(1<<20)) + " MiB"
}

// fmtRatio formats a ratio with two decimals.
func fmtRatio(x float64) string { return fmt.Sprintf("%.2f", x) }
