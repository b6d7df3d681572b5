package bench

import "time"

// Sizes are the scenario sizes. A zero field takes the default of the mode:
// the first value noted is the full run's, the second the quick run's.
type Sizes struct {
	// Clients is the number of concurrent submitting clients (32, 32).
	Clients int

	// ThroughputTasks per store (20000, 600).
	ThroughputTasks int
	// ThroughputInstances (64, 64).
	ThroughputInstances int

	// GapTasks queued before the instances are enabled (2000, 200).
	GapTasks int
	// GapInstances (8, 8).
	GapInstances int
	// GapTaskTime is the simulated duration of one task (50ms, 20ms).
	GapTaskTime time.Duration

	// EfficiencyTasks (5000, 300).
	EfficiencyTasks int
	// EfficiencyInstances (32, 16).
	EfficiencyInstances int
	// EfficiencyStep is the duration of one sampler step; task durations
	// are whole numbers of steps (20ms, 4ms).
	EfficiencyStep time.Duration

	// PlacementTasks (400, 60).
	PlacementTasks int
	// PlacementInstances (8, 4).
	PlacementInstances int
	// PlacementCheckpoints is the number of distinct checkpoints (4, 4).
	PlacementCheckpoints int
	// ModelLoad is the simulated checkpoint load time (1s, 100ms).
	ModelLoad time.Duration

	// MixedTasks run on the mixed fleet (400, 60).
	MixedTasks int
	// MixedInstances of the mixed fleet, half with SDXL (8, 4).
	MixedInstances int
	// MixedStep is the duration of one sampler step (20ms, 4ms).
	MixedStep time.Duration

	// ScaleTasks left pending (1000000, 20000).
	ScaleTasks int
	// ScaleInstances health-checked every second (1000, 100).
	ScaleInstances int
	// ScaleWindow is how long the gateway's CPU is sampled with
	// ScaleInstances (20s, 3s).
	ScaleWindow time.Duration

	// FanoutClients connected to /ws (2000, 200).
	FanoutClients int
	// FanoutUsers the clients are spread over, client c being user c mod
	// FanoutUsers; each user's task events go to that user's clients only.
	// Default: one user per client.
	FanoutUsers int
	// FanoutRate is the submitted (and completed) tasks per second (200, 50).
	FanoutRate int
	// FanoutDuration is how long tasks are submitted (30s, 4s).
	FanoutDuration time.Duration

	// OverheadTasks run one after another on each path, spread over the
	// rounds (2000, 100).
	OverheadTasks int
	// OverheadRounds alternate the paths this many times (3, 3).
	OverheadRounds int
	// OverheadBurst is the number of jobs submitted at once on each path in
	// each round (300, 50).
	OverheadBurst int

	// StorageTasks run one after another on each file store, spread over
	// the rounds (600, 30).
	StorageTasks int
	// StorageRounds alternate the stores this many times (6, 2).
	StorageRounds int
	// StorageBurst is the number of jobs submitted at once on each store
	// in each round (100, 20).
	StorageBurst int
	// StorageInstances behind each gateway (4, 2).
	StorageInstances int
	// StorageDownloads are the files downloaded one at a time on each way
	// of serving them in each round (50, 10).
	StorageDownloads int
	// StorageImageSide is the width and height of the output images (1024,
	// 1024).
	StorageImageSide int
	// StorageOutputSize is the size of one output PNG in bytes, padded
	// (comfysim.Options.OutputSize): 1.5 MB, about what a 1024×1024
	// Stable Diffusion image weighs as a PNG (1500000, 1500000).
	StorageOutputSize int
}

var (
	fullSizes = Sizes{
		Clients:         32,
		ThroughputTasks: 20000, ThroughputInstances: 64,
		GapTasks: 2000, GapInstances: 8, GapTaskTime: 50 * time.Millisecond,
		EfficiencyTasks: 5000, EfficiencyInstances: 32, EfficiencyStep: 20 * time.Millisecond,
		PlacementTasks: 400, PlacementInstances: 8, PlacementCheckpoints: 4, ModelLoad: time.Second,
		MixedTasks: 400, MixedInstances: 8, MixedStep: 20 * time.Millisecond,
		ScaleTasks: 1000000, ScaleInstances: 1000, ScaleWindow: 20 * time.Second,
		FanoutClients: 2000, FanoutRate: 200, FanoutDuration: 30 * time.Second,
		OverheadTasks: 2000, OverheadRounds: 3, OverheadBurst: 300,
		StorageTasks: 600, StorageRounds: 6, StorageBurst: 100, StorageInstances: 4, StorageDownloads: 50,
		StorageImageSide: 1024, StorageOutputSize: 1500000,
	}
	quickSizes = Sizes{
		Clients:         32,
		ThroughputTasks: 600, ThroughputInstances: 64,
		GapTasks: 200, GapInstances: 8, GapTaskTime: 20 * time.Millisecond,
		EfficiencyTasks: 300, EfficiencyInstances: 16, EfficiencyStep: 4 * time.Millisecond,
		PlacementTasks: 60, PlacementInstances: 4, PlacementCheckpoints: 4, ModelLoad: 100 * time.Millisecond,
		MixedTasks: 60, MixedInstances: 4, MixedStep: 4 * time.Millisecond,
		ScaleTasks: 20000, ScaleInstances: 100, ScaleWindow: 3 * time.Second,
		FanoutClients: 200, FanoutRate: 50, FanoutDuration: 4 * time.Second,
		OverheadTasks: 100, OverheadRounds: 3, OverheadBurst: 50,
		StorageTasks: 30, StorageRounds: 2, StorageBurst: 20, StorageInstances: 2, StorageDownloads: 10,
		StorageImageSide: 1024, StorageOutputSize: 1500000,
	}
)

// withDefaults fills zero fields from the mode's sizes.
func (s Sizes) withDefaults(quick bool) Sizes {
	d := fullSizes
	if quick {
		d = quickSizes
	}
	fill(&s.Clients, d.Clients)
	fill(&s.ThroughputTasks, d.ThroughputTasks)
	fill(&s.ThroughputInstances, d.ThroughputInstances)
	fill(&s.GapTasks, d.GapTasks)
	fill(&s.GapInstances, d.GapInstances)
	fill(&s.GapTaskTime, d.GapTaskTime)
	fill(&s.EfficiencyTasks, d.EfficiencyTasks)
	fill(&s.EfficiencyInstances, d.EfficiencyInstances)
	fill(&s.EfficiencyStep, d.EfficiencyStep)
	fill(&s.PlacementTasks, d.PlacementTasks)
	fill(&s.PlacementInstances, d.PlacementInstances)
	fill(&s.PlacementCheckpoints, d.PlacementCheckpoints)
	fill(&s.ModelLoad, d.ModelLoad)
	fill(&s.MixedTasks, d.MixedTasks)
	fill(&s.MixedInstances, d.MixedInstances)
	fill(&s.MixedStep, d.MixedStep)
	fill(&s.ScaleTasks, d.ScaleTasks)
	fill(&s.ScaleInstances, d.ScaleInstances)
	fill(&s.ScaleWindow, d.ScaleWindow)
	fill(&s.FanoutClients, d.FanoutClients)
	fill(&s.FanoutUsers, s.FanoutClients)
	fill(&s.FanoutRate, d.FanoutRate)
	fill(&s.FanoutDuration, d.FanoutDuration)
	fill(&s.OverheadTasks, d.OverheadTasks)
	fill(&s.OverheadRounds, d.OverheadRounds)
	fill(&s.OverheadBurst, d.OverheadBurst)
	fill(&s.StorageTasks, d.StorageTasks)
	fill(&s.StorageRounds, d.StorageRounds)
	fill(&s.StorageBurst, d.StorageBurst)
	fill(&s.StorageInstances, d.StorageInstances)
	fill(&s.StorageDownloads, d.StorageDownloads)
	fill(&s.StorageImageSide, d.StorageImageSide)
	fill(&s.StorageOutputSize, d.StorageOutputSize)
	return s
}

func fill[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
