package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/blob/seaweed"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// The storage scenario runs the same jobs, each saving one PNG, through a
// gateway that keeps its files on disk and through one that keeps them in
// an S3 bucket, in alternating rounds; then it downloads result files
// through each, and through a third gateway that redirects to presigned
// URLs. Each gateway has instances of its own, so an idle one never hears
// the other's prompts.

// storageColour is the colour of every output: one colour, so the
// simulator's padded PNGs share their bytes (comfysim.Options.OutputSize).
// Each job saves under a prefix of its own, so none is a cached replay.
const storageColour = 0x3366cc

// envSeaweedFSBin names the weed binary when Options.SeaweedFSBin is empty,
// as for the S3 store's tests.
const envSeaweedFSBin = "TEST_SEAWEEDFS_BIN"

// s3Target is the S3 service the storage scenario's gateways use.
type s3Target struct {
	endpoint, bucket, region string
	// prefix is the run's own key prefix, ending in "/".
	prefix string
	// env carries the credentials to the gateways (nil: theirs are the
	// bench's environment).
	env []string
	// pids is the S3 server's process when the bench started it.
	pids []int
	// about describes the service.
	about string
	// client deletes the run's objects at the end (nil: nothing to do,
	// the server and its data go away).
	client *minio.Client
	server *seaweed.Server
}

// s3Target starts SeaweedFS, or takes Options.S3Endpoint; nil (and why)
// when there is neither.
func (e *env) s3Target(ctx context.Context) (*s3Target, string, error) {
	id := time.Now().Format("20060102-150405") + "-" + randomHex(3)
	if e.opts.S3Endpoint != "" {
		creds, err := blob.S3Credentials("", "")
		if err != nil {
			return nil, "", err
		}
		u, err := url.Parse(e.opts.S3Endpoint)
		if err != nil {
			return nil, "", fmt.Errorf("S3 endpoint: %w", err)
		}
		c, err := minio.New(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https", Region: e.opts.S3Region})
		if err != nil {
			return nil, "", fmt.Errorf("S3 endpoint: %w", err)
		}
		return &s3Target{endpoint: e.opts.S3Endpoint, bucket: e.opts.S3Bucket, region: e.opts.S3Region,
			prefix: "comfyfleet-bench/" + id + "/", client: c,
			about: fmt.Sprintf("%s, bucket %s (given; its CPU is not measured)", e.opts.S3Endpoint, e.opts.S3Bucket)}, "", nil
	}
	bin := e.opts.SeaweedFSBin
	if bin == "" {
		bin = os.Getenv(envSeaweedFSBin)
	}
	if bin == "" {
		if p, err := exec.LookPath("weed"); err == nil {
			bin = p
		}
	}
	if bin == "" {
		return nil, "no S3 server: give --seaweedfs-bin (or " + envSeaweedFSBin + ") or --s3-endpoint", nil
	}
	dir := filepath.Join(e.root, "seaweedfs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", err
	}
	srv, err := seaweed.Start(seaweed.Options{Bin: bin, Dir: dir, VolumeSizeLimitMB: 1024})
	if err != nil {
		return nil, "", err
	}
	bucket, err := srv.MakeBucket(ctx, "comfyfleet-bench-")
	if err != nil {
		srv.Stop()
		return nil, "", err
	}
	return &s3Target{endpoint: srv.Endpoint, bucket: bucket, prefix: "bench/", server: srv, pids: []int{srv.Pid()},
		env: []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_SESSION_TOKEN="},
		about: fmt.Sprintf("SeaweedFS (weed server: master, volume, filer and S3 in one process) on loopback, pid %d, started by the bench in %s",
			srv.Pid(), fmtDur(srv.StartTime))}, "", nil
}

// files is the gateway's files.s3 section for a sub-prefix of the run's.
func (t *s3Target) files(sub, serve string) *s3Files {
	return &s3Files{endpoint: t.endpoint, bucket: t.bucket, prefix: t.prefix + sub + "/", region: t.region, serve: serve}
}

// close stops the server, or deletes the run's objects from the given
// service.
func (t *s3Target) close(ctx context.Context, logf func(string, ...any)) {
	if t.server != nil {
		t.server.Stop()
		return
	}
	objects := t.client.ListObjects(ctx, t.bucket, minio.ListObjectsOptions{Prefix: t.prefix, Recursive: true})
	for res := range t.client.RemoveObjects(ctx, t.bucket, objects, minio.RemoveObjectsOptions{}) {
		logf("delete %s: %v", res.ObjectName, res.Err)
	}
}

// storageLeg is one gateway of the scenario, with its instances.
type storageLeg struct {
	name string
	g    *gateway
	sims *sims
	// jobs counts the prompts run on its instances.
	jobs int
	// serial and burst hold one phase per round (none for a download-only
	// leg).
	serial, burst []phase
	// files are the result files it downloads, and downloads one phase
	// per round.
	files     []resultFile
	downloads []downloadPhase
	// redirect says GET /files/... answers with a 302.
	redirect bool
}

// resultFile is a file record, as GET /api/files lists it.
type resultFile struct {
	URL  string `json:"url"`
	Size int64  `json:"size"`
}

// downloadPhase is one round's downloads on one leg.
type downloadPhase struct {
	// latencies run from the request to the body's last byte; first
	// from the request to the gateway's whole answer (the 302 when
	// redirecting, else the same).
	latencies, first []time.Duration
	bytes            int64
	cpu              cpuUse
}

// storageRun measures the legs round after round.
type storageRun struct {
	e      *env
	target *s3Target
	// legs are disk and S3 (both run jobs and serve downloads), then the
	// redirecting gateway (downloads only).
	legs   []*storageLeg
	rounds []roundLoad
	// next numbers the jobs, for their output prefixes.
	next int
	// noFollow is a client that returns a redirect instead of following it.
	noFollow *http.Client
}

// runStorage runs the storage scenario.
func runStorage(ctx context.Context, e *env) (*Table, error) {
	s := e.sizes
	title := fmt.Sprintf("storage: %d×%d PNG outputs of %s on the disk store and on S3, %d rounds",
		s.StorageImageSide, s.StorageImageSide, fmtBytes(int64(s.StorageOutputSize)), s.StorageRounds)
	target, skipped, err := e.s3Target(ctx)
	if err != nil {
		return nil, fmt.Errorf("S3: %w", err)
	}
	if target == nil {
		t := &Table{Title: title, Header: storageHeader}
		t.add("S3", "skipped: "+skipped)
		return t, nil
	}
	defer target.close(context.WithoutCancel(ctx), e.logf)
	e.logf("S3: %s", target.about)
	r := &storageRun{e: e, target: target, noFollow: &http.Client{
		Transport: e.hc.Transport, Timeout: e.hc.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	defer r.close()
	for _, l := range []struct {
		name  string
		files *s3Files
	}{
		{"disk", nil},
		{"S3", target.files("proxy", "proxy")},
		{"S3, redirect", target.files("redirect", "redirect")},
	} {
		if err := r.addLeg(ctx, l.name, l.files); err != nil {
			return nil, fmt.Errorf("%s: %w", l.name, err)
		}
	}
	if err := r.run(ctx); err != nil {
		return nil, err
	}
	if err := r.check(ctx); err != nil {
		return nil, err
	}
	return r.table(), nil
}

// storageHeader heads the scenario's first table.
var storageHeader = []string{"figure", "disk", "S3", "S3 − disk", "S3 / disk"}

// addLeg starts a leg's instances and gateway.
func (r *storageRun) addLeg(ctx context.Context, name string, files *s3Files) error {
	s := r.e.sizes
	n := s.StorageInstances
	if files != nil && files.serve == "redirect" {
		n = 1 // it only makes the files it serves
	}
	fleet, err := startSims(n, comfysim.Options{OutputSize: s.StorageOutputSize, MaxImageSide: s.StorageImageSide})
	if err != nil {
		return err
	}
	leg := &storageLeg{name: name, sims: fleet, redirect: files != nil && files.serve == "redirect"}
	r.legs = append(r.legs, leg)
	spec := gatewaySpec{label: "storage-" + strings.NewReplacer(", ", "-", " ", "-").Replace(strings.ToLower(name)), ports: fleet.ports(), s3: files}
	if files != nil {
		spec.env = r.target.env
	}
	if leg.g, err = r.e.startGateway(ctx, spec); err != nil {
		return err
	}
	return leg.g.admin.waitAlive(ctx, n, time.Minute)
}

func (r *storageRun) close() {
	for _, l := range r.legs {
		if l.g != nil {
			_ = l.g.stop()
		}
		l.sims.close()
	}
}

// meter reads the CPU time of a leg's gateway and of the S3 server.
func (r *storageRun) meter(l *storageLeg) cpuMeter {
	return cpuMeter{gateway: l.g, storage: r.target.pids}
}

// prompts are n jobs of a leg, each saving under a prefix of its own.
func (r *storageRun) prompts(l *storageLeg, what string, n int) []string {
	side := r.e.sizes.StorageImageSide
	out := make([]string, n)
	for i := range out {
		r.next++
		out[i] = imagePrompt(side, storageColour, fmt.Sprintf("storage/%s/%s/job-%06d", strings.ReplaceAll(l.name, ", ", "-"), what, r.next))
	}
	l.jobs += n
	return out
}

// jobLegs are the legs that run measured jobs.
func (r *storageRun) jobLegs() []*storageLeg { return r.legs[:2] }

// run warms the legs up (which also makes the files they serve), then
// measures every round: each job leg one job at a time, then each at
// once, then the downloads of every leg, the legs taking turns in reverse
// order every other round.
func (r *storageRun) run(ctx context.Context) error {
	s := r.e.sizes
	warm := max(overheadWarmup, s.StorageDownloads)
	for _, l := range r.legs {
		if err := r.serial(ctx, l, r.prompts(l, "warmup", warm), nil); err != nil {
			return fmt.Errorf("%s: warm-up: %w", l.name, err)
		}
		var page struct {
			Items []resultFile `json:"items"`
		}
		if err := l.g.admin.do(ctx, "GET", fmt.Sprintf("/api/files?limit=%d", s.StorageDownloads), nil, &page); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		if len(page.Items) != s.StorageDownloads {
			return fmt.Errorf("%s: %d files listed, want %d", l.name, len(page.Items), s.StorageDownloads)
		}
		l.files = page.Items
	}
	per := max(s.StorageTasks/s.StorageRounds, 1)
	quiet := quietGate{Below: r.e.opts.QuietBelow, Wait: r.e.opts.QuietWait}
	for round := range s.StorageRounds {
		var load roundLoad
		if quiet.Below > 0 {
			var err error
			if load.waited, load.quiet, err = quiet.wait(ctx, cpuMeter{storage: r.target.pids}, round, r.e.logf); err != nil {
				return err
			}
		}
		load.start = time.Now()
		jobs, all := slices.Clone(r.jobLegs()), slices.Clone(r.legs)
		if round%2 == 1 {
			slices.Reverse(jobs)
			slices.Reverse(all)
		}
		tag := fmt.Sprintf("r%d", round+1)
		for _, l := range jobs {
			l.g.profile(ctx, "-serial")
			var ph phase
			if err := r.serial(ctx, l, r.prompts(l, tag+"-serial", per), &ph); err != nil {
				return fmt.Errorf("round %d, %s, one at a time: %w", round+1, l.name, err)
			}
			l.serial = append(l.serial, ph)
			load.cpu = load.cpu.add(ph.cpu)
		}
		for _, l := range jobs {
			l.g.profile(ctx, "-burst")
			ph, err := r.burst(ctx, l, r.prompts(l, tag+"-burst", s.StorageBurst))
			if err != nil {
				return fmt.Errorf("round %d, %s, at once: %w", round+1, l.name, err)
			}
			l.burst = append(l.burst, ph)
			load.cpu = load.cpu.add(ph.cpu)
		}
		for _, l := range all {
			d, err := r.download(ctx, l)
			if err != nil {
				return fmt.Errorf("round %d, %s, downloads: %w", round+1, l.name, err)
			}
			l.downloads = append(l.downloads, d)
			load.cpu = load.cpu.add(d.cpu)
		}
		load.end, load.loadavg = time.Now(), loadAvg()
		r.rounds = append(r.rounds, load)
		r.e.logf("round %d of %d done: %s; load average %s", round+1, s.StorageRounds, load.cpu, load.loadavg)
	}
	return nil
}

// serial runs the prompts one at a time through a leg's gateway; with
// ph, it records their latencies and the CPU time around them.
func (r *storageRun) serial(ctx context.Context, l *storageLeg, prompts []string, ph *phase) error {
	runOne, stop, err := gatewaySerial(l.g)(ctx)
	if err != nil {
		return err
	}
	defer stop()
	m := r.meter(l)
	s0 := m.sample()
	var lat []time.Duration
	for _, p := range prompts {
		t0 := time.Now()
		if err := runOne(ctx, p); err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
	}
	if ph != nil {
		s1 := m.sample()
		*ph = phase{jobs: len(prompts), latencies: lat, elapsed: s1.at.Sub(s0.at), cpu: s1.sub(s0)}
	}
	return nil
}

// burst submits the prompts at once from Sizes.Clients clients.
func (r *storageRun) burst(ctx context.Context, l *storageLeg, prompts []string) (phase, error) {
	m := r.meter(l)
	s0 := m.sample()
	elapsed, err := gatewayBurst(r.e, l.g)(ctx, prompts)
	if err != nil {
		return phase{}, err
	}
	return phase{jobs: len(prompts), elapsed: elapsed, cpu: m.sample().sub(s0)}, nil
}

// download GETs each of a leg's files once, one at a time, following a
// redirect by hand so that the gateway's part is timed apart.
func (r *storageRun) download(ctx context.Context, l *storageLeg) (downloadPhase, error) {
	var d downloadPhase
	m := r.meter(l)
	s0 := m.sample()
	for _, f := range l.files {
		t0 := time.Now()
		n, status, loc, err := r.fetch(ctx, f.URL)
		if err != nil {
			return d, err
		}
		first := time.Since(t0)
		want := http.StatusOK
		if l.redirect {
			want = http.StatusFound
		}
		if status != want {
			return d, fmt.Errorf("GET %s: %d, want %d", f.URL, status, want)
		}
		if l.redirect {
			if n, status, _, err = r.fetch(ctx, loc); err != nil {
				return d, fmt.Errorf("GET the presigned URL: %w", err)
			}
			if status != http.StatusOK {
				return d, fmt.Errorf("GET the presigned URL of %s: %d", f.URL, status)
			}
		}
		if n != f.Size {
			return d, fmt.Errorf("GET %s: %d bytes, want %d", f.URL, n, f.Size)
		}
		d.latencies = append(d.latencies, time.Since(t0))
		d.first = append(d.first, first)
		d.bytes += n
	}
	d.cpu = m.sample().sub(s0)
	return d, nil
}

// fetch GETs u without following a redirect and reads the whole body.
func (r *storageRun) fetch(ctx context.Context, u string) (n int64, status int, location string, err error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, 0, "", err
	}
	resp, err := r.noFollow.Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	n, err = io.Copy(io.Discard, resp.Body)
	return n, resp.StatusCode, resp.Header.Get("Location"), err
}

// check verifies that every leg's instances ran each prompt once and that
// every job's output was stored whole.
func (r *storageRun) check(ctx context.Context) error {
	want := int64(r.e.sizes.StorageOutputSize)
	for _, l := range r.legs {
		if err := checkRuns(l.sims.log, l.jobs); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		var page struct {
			Total int          `json:"total"`
			Items []resultFile `json:"items"`
		}
		if err := l.g.admin.do(ctx, "GET", "/api/files?limit=1", nil, &page); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		if page.Total != l.jobs || len(page.Items) != 1 || page.Items[0].Size != want {
			return fmt.Errorf("%s: %d files stored (the last of %d bytes), want %d of %d bytes", l.name, page.Total, firstSize(page.Items), l.jobs, want)
		}
	}
	return nil
}

func firstSize(files []resultFile) int64 {
	if len(files) == 0 {
		return 0
	}
	return files[0].Size
}

// fmtBytes formats a size in MB (10^6 bytes) or kB.
func fmtBytes(n int64) string {
	if n >= 1e6 {
		return sig3(float64(n)/1e6) + " MB"
	}
	return sig3(float64(n)/1e3) + " kB"
}
