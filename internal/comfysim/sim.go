package comfysim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// DefaultCheckpoints are the checkpoint names an instance offers when
// Options.Checkpoints is nil.
var DefaultCheckpoints = []string{"sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors", "dreamshaper_8.safetensors"}

// Options configures a simulated instance. The zero value is a fast,
// instant v0.3.65 server.
type Options struct {
	// Name labels the instance in the execution log. Default: the address it
	// listens on.
	Name string
	// Log is the execution log, shareable by many instances. Default: a
	// private one (see Sim.Log).
	Log *Log
	// RequireUUIDPromptID applies the v0.25.0+ rule: a client prompt_id must
	// be a canonical lowercase UUID, otherwise 400 invalid_prompt_id.
	// Default false: v0.3.65 accepts any value and str()s it.
	RequireUUIDPromptID bool
	// NodeDelay is how long every executed node takes. Default 0 (instant).
	// SetNodeDelay overrides it per class.
	NodeDelay time.Duration
	// Steps, when > 0, is the number of progress steps KSampler-style nodes
	// report instead of their "steps" input. Default 0: the input decides.
	Steps int
	// StepDelay is the time each progress step takes. Default 0.
	StepDelay time.Duration
	// PreviewMethod is --preview-method. "" or "none" (ComfyUI's default)
	// sends no sampler previews; any other value ("auto", "latent2rgb",
	// "taesd") makes KSampler-style nodes send a JPEG preview of the latent
	// with each step, as a binary frame after its progress message.
	PreviewMethod string
	// NoPreviewMetadata makes the instance behave like ComfyUI before
	// v0.3.45: the feature_flags message is ignored, so previews are always
	// type-1 frames, without metadata. Default false.
	NoPreviewMetadata bool
	// ModelLoadDelay is paid when a CheckpointLoaderSimple loads a checkpoint
	// other than the one the instance loaded last. Default 0.
	ModelLoadDelay time.Duration
	// Checkpoints are the names the ckpt_name combos accept. nil means
	// DefaultCheckpoints; an empty non-nil slice means none.
	Checkpoints []string
	// Loras are the names the lora_name combos accept. Default none.
	Loras []string
	// MissingClasses are node classes of the recorded catalogue this
	// instance does not offer, as a ComfyUI without some custom node pack:
	// absent from /object_info, and a prompt using one fails validation
	// ("Cannot execute because node X does not exist."). Default none.
	MissingClasses []string
	// MaxImageSide caps the width and height of the PNGs written (requested
	// sizes above it are clamped). Default 2048.
	MaxImageSide int
	// DisableMetadata leaves the prompt out of saved PNGs, like ComfyUI's
	// --disable-metadata; saves memory in long benchmarks. Default false.
	DisableMetadata bool
	// OutputSize, when above a saved PNG's own size, pads every PNG that
	// SaveImage and PreviewImage write to that many bytes with a private
	// ancillary chunk ("cfPd") of incompressible bytes, which decoders
	// skip. The simulator's images are solid colour and compress to almost
	// nothing (a 1024×1024 one to about 3 KB); padded, an output weighs
	// what a real one does (a 1024×1024 Stable Diffusion PNG is about
	// 1.5 MB), for benchmarks of storing and serving outputs. Images of one
	// size and colour share their padded bytes, so a long run of one colour
	// adds no memory per output. Default 0: no padding.
	OutputSize int
	// KeepStateOnRestart keeps the pending queue, the history and the prompt
	// counter across Stop/Restart. Default false: like a real restart, both
	// are lost (files in input and output survive, temp is wiped).
	KeepStateOnRestart bool
	// SafeReconnect turns off ComfyUI's same-clientId reconnect bug (the old
	// socket's close unregisters the new one; docs/comfyui-protocol.md). Default false.
	SafeReconnect bool
	// HistoryMax caps the history like MAXIMUM_HISTORY_SIZE. Default 10000.
	HistoryMax int
	// MaxUploadSize limits request bodies (--max-upload-size). Default 100 MiB.
	MaxUploadSize int64
	// WSQueueSize bounds each socket's outgoing frames; a socket that falls
	// that far behind is closed. Default 4096.
	WSQueueSize int
	// MaxRecorded bounds Prompts() and Interrupts() (oldest dropped). Default 10000.
	MaxRecorded int
	// OutputDir, when set, is a real folder every saved output is also
	// written to, at <OutputDir>/<subfolder>/<filename>, as ComfyUI's
	// --output-directory: a gateway sharing the folder can read outputs
	// there instead of over /view. Default "": outputs live in memory only.
	OutputDir string
}

func (o Options) withDefaults() Options {
	if o.Checkpoints == nil {
		o.Checkpoints = DefaultCheckpoints
	}
	if o.MaxImageSide <= 0 {
		o.MaxImageSide = 2048
	}
	if o.HistoryMax <= 0 {
		o.HistoryMax = 10000
	}
	if o.MaxUploadSize <= 0 {
		o.MaxUploadSize = 100 << 20
	}
	if o.WSQueueSize <= 0 {
		o.WSQueueSize = 4096
	}
	if o.MaxRecorded <= 0 {
		o.MaxRecorded = 10000
	}
	return o
}

// Sim is one simulated ComfyUI instance.
type Sim struct {
	opts  Options
	log   *Log
	files *fileStore
	cat   *simCatalog
	k     knobs

	// lmu guards the lifecycle fields below.
	lmu     sync.Mutex
	addr    string
	name    string
	p       *proc       // the running incarnation; nil when stopped
	saved   *savedState // queue and history kept for Restart (KeepStateOnRestart)
	release func()      // frees the port held while stopped
	closed  bool
}

// savedState is what KeepStateOnRestart carries into the next incarnation.
type savedState struct {
	queue   []*queueItem
	hist    *history
	counter int64
}

// New makes a simulated instance; it does not listen yet.
func New(opts Options) *Sim {
	opts = opts.withDefaults()
	s := &Sim{opts: opts, log: opts.Log, files: newFileStore()}
	s.files.outputDir = opts.OutputDir
	if s.log == nil {
		s.log = NewLog()
	}
	s.cat = newSimCatalog(opts.Checkpoints, opts.Loras, opts.MissingClasses, s.files)
	s.k.init(opts.NodeDelay)
	return s
}

// Log returns the execution log the instance writes to.
func (s *Sim) Log() *Log { return s.log }

// Name is the instance's label in the execution log.
func (s *Sim) Name() string {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.name
}

// Start listens on addr ("127.0.0.1:0" picks a port) and serves.
func (s *Sim) Start(addr string) error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closed {
		return errors.New("comfysim: start: instance closed")
	}
	if s.addr != "" {
		return fmt.Errorf("comfysim: start: already started on %s", s.addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("comfysim: start: %w", err)
	}
	s.addr = ln.Addr().String()
	s.name = s.opts.Name
	if s.name == "" {
		s.name = s.addr
	}
	s.p = startProc(s, ln, nil)
	return nil
}

// Addr is the "host:port" the instance is bound to ("" before Start).
func (s *Sim) Addr() string {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.addr
}

// URL is the instance's base URL, "http://host:port".
func (s *Sim) URL() string { return "http://" + s.Addr() }

// Running reports whether the instance is up (started and not stopped).
func (s *Sim) Running() bool {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.p != nil
}

// Stop makes the instance go away: the listener closes, every connection
// and socket is dropped, the running prompt dies without a history entry
// (logged as OutcomeAborted). The port is kept for Restart.
func (s *Sim) Stop() error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.p == nil {
		return nil
	}
	saved := s.p.shutdown()
	if s.opts.KeepStateOnRestart {
		s.saved = saved
	}
	s.p = nil
	s.release = reservePort(s.addr)
	return nil
}

// Restart brings a stopped instance back on the same address, as a freshly
// started ComfyUI: empty queue and history (unless KeepStateOnRestart), no
// model loaded, empty caches, temp wiped.
func (s *Sim) Restart() error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	switch {
	case s.closed:
		return errors.New("comfysim: restart: instance closed")
	case s.addr == "":
		return errors.New("comfysim: restart: never started")
	case s.p != nil:
		return nil
	}
	s.release()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.release = reservePort(s.addr)
		return fmt.Errorf("comfysim: restart: %w", err)
	}
	s.release = nil
	s.files.wipeTemp()
	s.k.forgetModel()
	s.p = startProc(s, ln, s.saved)
	s.saved = nil
	return nil
}

// Close stops the instance for good and waits for all its goroutines.
func (s *Sim) Close() error {
	err := s.Stop()
	s.lmu.Lock()
	s.closed = true
	if s.release != nil {
		s.release()
		s.release = nil
	}
	s.lmu.Unlock()
	s.k.releaseAll()
	return err
}

// current returns the running incarnation, or nil.
func (s *Sim) current() *proc {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.p
}

// StartFleet starts n instances that share opts (and opts.Log, created when
// nil). addr "127.0.0.1:0" gives each a free port; "host:port" gives ports
// port, port+1, ... On error the instances already started are closed.
func StartFleet(n int, addr string, opts Options) ([]*Sim, error) {
	if opts.Log == nil {
		opts.Log = NewLog()
	}
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("comfysim: start fleet: %w", err)
	}
	sims := make([]*Sim, 0, n)
	for i := 0; i < n; i++ {
		o := opts
		if o.Name != "" {
			o.Name = fmt.Sprintf("%s-%d", opts.Name, i+1)
		}
		s := New(o)
		a := net.JoinHostPort(host, "0")
		if port != 0 {
			a = net.JoinHostPort(host, fmt.Sprint(port+i))
		}
		if err := s.Start(a); err != nil {
			closeAll(sims)
			return nil, fmt.Errorf("comfysim: start fleet: instance %d: %w", i+1, err)
		}
		sims = append(sims, s)
	}
	return sims, nil
}

func closeAll(sims []*Sim) {
	for _, s := range sims {
		s.Close()
	}
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	var port int
	if _, err := fmt.Sscan(p, &port); err != nil {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// sleepCtx waits d, or returns errAborted as soon as ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if ctx.Err() != nil {
		return errAborted
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return errAborted
	}
}
