// Package comfysim is a faithful fake of a ComfyUI server: real HTTP and
// WebSocket on a real port, answering in the shapes a real ComfyUI v0.3.65
// answered in the recorded traces (testdata/traces; docs/comfyui-protocol.md
// sums up the protocol). Every test, benchmark and demo of ComfyFleet talks to
// ComfyUI through it, so it reproduces ComfyUI's behaviour, quirks included,
// rather than an idealised API.
//
// # Using it
//
//	s := comfysim.New(comfysim.Options{NodeDelay: 50 * time.Millisecond})
//	if err := s.Start("127.0.0.1:0"); err != nil { ... }
//	defer s.Close()
//	// point a client at s.URL(); s.Log() tells which prompts ran where.
//
// StartFleet starts several instances sharing one Options (and one *Log);
// "comfyfleet sim --listen 127.0.0.1 --ports 8001-8008" runs a fleet from
// the command line (cmd/comfyfleet/sim.go, flags for the knobs below).
//
// # What is simulated
//
// Routes, each also under /api (server.py add_routes): POST /prompt,
// GET /prompt, GET and POST /queue, POST /interrupt (global, or by prompt_id
// when that prompt runs), POST /free, GET /history (max_items, offset),
// GET /history/{prompt_id} ({} until written), POST /history (delete,
// clear), GET /view (annotations, subfolder, preview=jpeg|webp, channel),
// POST /upload/image, GET /system_stats, GET /object_info[/{class}],
// GET /features, /embeddings, /models[/{folder}], /extensions, / and /ws.
// aiohttp's framing is kept: JSON as "application/json; charset=utf-8" in
// json.dumps layout (", " and ": ", ASCII escapes, 1.0 stays a float, key
// order kept, so Content-Length matches the traces), bare statuses as empty
// application/octet-stream bodies, and "500 Internal Server Error\n\nServer
// got itself in trouble" as text/plain for bodies Python cannot parse. The
// origin check (403 when a loopback Host meets another Origin) is applied.
//
// The queue is PromptQueue ported: a Python heapq list on (number,
// prompt_id), shown raw (unsorted) in /queue as 5-element items; one prompt
// runs at a time; the counter starts at 0 and moves for every POST /prompt
// that parses, rejected or not; "front" uses -counter, a client "number" is
// stored and echoed as a float; /queue delete touches pending items only
// and deleting the last one broadcasts status twice, as ComfyUI does.
//
// Validation is validate_prompt/validate_inputs ported against the
// recorded node catalog (378 classes): invalid_prompt for an unknown or
// missing class_type, prompt_no_outputs, prompt_outputs_failed_validation
// with node_errors (required_input_missing, bad_linked_input,
// return_type_mismatch, exception_during_validation and
// exception_during_inner_validation with Python-style KeyError texts,
// invalid_input_type, value_smaller_than_min, value_bigger_than_max,
// value_not_in_list, custom_validation_failed for LoadImage), partial
// success (200 with node_errors), int()/float()/str()/bool() coercions
// written back into the stored prompt, and dependent_outputs accumulated
// across outputs as in the original loop.
//
// Execution follows PromptExecutor and ExecutionList: nodes are picked in
// ComfyUI's UX-friendly order (output nodes first, then nodes one or two
// links from one; s04's runtime error runs 5, 1, 4, 2, 3 exactly as
// recorded), outputs are cached by input signature with the classic cache
// (only the current prompt's signatures survive), so a re-submitted prompt
// reports every node in execution_cached, sends no executing, replays
// executed and writes no file. WebSocket events come in the traced order:
// status with sid on connect (registered before the handshake answer, so a
// client that submits at once misses nothing); status on enqueue and on
// dequeue; execution_start; execution_cached; per node progress_state
// (running), executing, progress/progress_state per step, executed,
// progress_state (finished); execution_success, execution_error or
// execution_interrupted; status once history is written; and
// executing{node: null} last. Routing is ComfyUI's (docs/comfyui-protocol.md):
// with a client_id only that socket gets execution events; without one, only
// progress, progress_state, previews and execution_interrupted are
// broadcast. The first client frame may negotiate feature_flags; binary
// previews are type 1 or, once negotiated, type 4 with metadata. A socket
// reconnecting mid-node receives {"node": id} right after its status.
// ComfyUI's same-clientId reconnect bug (the old socket's close unregisters
// the new one) is reproduced unless Options.SafeReconnect is set.
//
// # Nodes and images
//
// Modelled classes: EmptyImage, LoadImage, LoadImageMask, ImageInvert,
// ImageScale, ImageScaleBy, ImageBlur, SolidMask, JoinImageWithAlpha,
// ImageBatch, SaveImage, PreviewImage, SaveImageWebsocket, and stand-ins for
// CheckpointLoaderSimple, CLIPTextEncode, EmptyLatentImage, KSampler,
// KSamplerAdvanced, VAEDecode and VAEEncode, all with the input specs of the
// recorded object_info. Every other catalog class validates against its
// recorded spec and executes as a no-op that passes an input of the same
// type through. Combo lists that depend on the server are filled per
// instance: ckpt_name offers Options.Checkpoints, lora_name Options.Loras,
// LoadImage offers the uploaded files at the root of input. An instance
// may lack some classes (Options.MissingClasses, as a ComfyUI without a
// custom node pack): they are absent from its /object_info and a prompt
// using one fails validation there, so a fleet of simulators can be
// heterogeneous.
//
// Images are solid colour per batch item, with real sizes, batch counts and
// channel counts, so ComfyUI's shape errors happen for the same inputs
// (ImageBlur's reflect padding, ImageBatch's torch.cat of RGB with RGBA).
// SaveImage and PreviewImage write real PNGs of the requested size (capped
// at Options.MaxImageSide, default 2048), named like ComfyUI
// (prefix_00001_.png, subfolders from the prefix, %width%/%height%/dates,
// ComfyUI_temp_xxxxx_ for previews), with the prompt and extra_pnginfo in
// tEXt chunks unless DisableMetadata. Encoding is cached per size: a new
// colour costs microseconds. Files live in memory; input and output survive
// Stop/Restart, temp is wiped. LoadImage reads uploads (annotated
// references such as "x.png [output]" included) and takes the first pixel's
// colour. KSampler reports "steps" progress updates (Options.Steps
// overrides), each taking Options.StepDelay, and derives its colour from its
// seed and inputs; VAEDecode gives latent size times 8. With
// Options.PreviewMethod set, each step also sends a JPEG preview of the
// latent's size, fading from grey to the final colour. SaveImageWebsocket
// sends each image as a PNG preview frame with a progress step, as ComfyUI
// does, and Log.Streamed records their hashes.
//
// # Knobs
//
// Options: NodeDelay, Steps, StepDelay, PreviewMethod, ModelLoadDelay,
// Checkpoints, Loras, MissingClasses, RequireUUIDPromptID (v0.25+ canonical-UUID prompt_id rule,
// 400 invalid_prompt_id), NoPreviewMetadata (no feature_flags, as before
// v0.3.45), KeepStateOnRestart, SafeReconnect, MaxImageSide,
// DisableMetadata, HistoryMax, MaxUploadSize, WSQueueSize, MaxRecorded.
// Methods (safe to call while serving):
//
//	SetNodeDelay(classType, d)      per-class node duration ("" = every class)
//	SetModels(ckpts, loras)         change the checkpoints and LoRAs offered (nil keeps a list)
//	FailNode(target, msg)           execution_error (RuntimeError msg) on a node id or class, every time
//	FailNodeOnce(target, msg)       the same, next matching node only
//	FailHTTP(route, n)              next n matching requests answer aiohttp's 500, unhandled
//	InjectHTTPFault(HTTPFault{...}) also After (handled, then 500: the client cannot tell),
//	                                Drop (connection cut), Stall, Hold (handled, answered when a channel closes),
//	                                other statuses; routes like "POST /prompt", "/history/"
//	DropWebSockets()                cut every socket now (queued frames still go out first)
//	DropWebSocketOn(event, n)       cut every socket instead of sending the n-th next frame of that type
//	Hang(promptID) / Release()      park a prompt ("" = the next one) in its first node until Release,
//	                                an interrupt (it is interruptible, like a sampler) or Stop
//	WaitHanging(ctx), Hanging()     see what hangs
//	WaitNodeStarted(ctx, id, node)  wait until a node passed its interrupt check
//	ClearFaults()                   drop node, HTTP and WebSocket faults and pending hangs
//	Stop() / Restart()              go away (listener closed, connections and sockets cut, the running
//	                                prompt dies: OutcomeAborted, no history) and come back on the same port
//	ModelLoads(), LoadedModel()     checkpoint loads: a load, and ModelLoadDelay, whenever a workflow's
//	                                checkpoint differs from the one loaded last (also after /free unload)
//	Prompts()                       every POST /prompt: body and "prompt" member exactly as received,
//	                                assigned id, client_id, status
//	Interrupts()                    every POST /interrupt: target ("" = global), what was running, applied
//
// While stopped the port stays bound (without listening), so connections
// are refused and no other listener can take it before Restart. A restart is
// a new process: queue, history, counter, caches and the loaded model are
// gone, unless KeepStateOnRestart keeps the pending queue, history and
// counter (the prompt that was running is lost either way).
//
// The execution Log records, per prompt_id, every run with its instance,
// start (pick-up), end (history written, or the stop) and Outcome. Share one
// Log across instances to prove a gateway never ran a task twice
// (Log.Duplicates) or on two instances at once (Log.Overlaps); Log.Wait and
// Log.WaitFinished wait without polling.
//
// # Versions
//
// Default shapes are the traced v0.3.65 ones where current upstream differs
// (docs/comfyui-protocol.md, Version differences): invalid_prompt rather
// than missing_node_type, no extra_data.create_time, /features with two
// keys, system_stats without comfy_package_versions or deploy_environment,
// queue items of five elements, progress_state messages without
// throttling, cached outputs in history whether or not a client_id was
// sent. The v0.25+ prompt_id rule is RequireUUIDPromptID.
//
// # Known differences from a real ComfyUI
//
// Pixels are not computed (solid colours; LoadImage keeps only size, alpha
// and first pixel). WebP previews are lossless VP8L where PIL writes lossy
// WebP. Models are not loaded: model nodes are stand-ins and other model
// nodes' combos are the recorded empty lists, so they only validate with
// their recorded options. No node expansion, lazy inputs, subgraphs or
// async nodes; a validation cycle is reported as ComfyUI's unwinding
// leaves it (no node_errors) rather than after a real RecursionError.
// Not served: /upload/mask, /view_metadata, /internal/*, /userdata,
// /settings, /i18n, the jobs API (v0.6.0+). WebSocket client frames are
// handled concurrently with HTTP requests (aiohttp runs both on one event
// loop), so a feature_flags message racing a submit may apply a little
// later. Each socket has a bounded queue (WSQueueSize); a client that stops
// reading that long is disconnected instead of stalling the instance.
// Prompts() and Interrupts() keep at most MaxRecorded entries.
//
// # Speed
//
// BenchmarkPromptThroughput drives zero-duration prompts (a new colour each,
// so every run writes a PNG) from one gateway-like client per instance,
// counting a prompt at its executing{node: null}: 3,000 to 3,700 prompts/s
// with one instance and 4,000 to 5,800 with eight, on a 2-core VM shared
// with other work, the clients included. WebSocket frames queued together
// leave in one write system call.
package comfysim
