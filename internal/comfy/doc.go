// Package comfy is the gateway's client for one ComfyUI instance: its HTTP
// routes (submit, queue, history, interrupt, upload, view, system stats,
// object info) and its WebSocket event feed.
//
// The client speaks both the shapes recorded from ComfyUI v0.3.65 and the
// shapes of current upstream (see docs/comfyui-protocol.md), and
// ignores message types and fields it does not know.
//
// Three rules from the protocol shape this package:
//
//   - Open the WebSocket with the same client id that Submit sends as
//     client_id, before submitting: ComfyUI routes execution events only to
//     the socket whose id matches the prompt's client_id. [Client] does both
//     with one fixed id.
//   - No Origin header is sent, so ComfyUI's origin check never rejects us.
//   - ComfyUI keeps one socket per client id and loses track of a new socket
//     when an older one with the same id closes later. [Stream] therefore
//     closes the old socket before it dials again.
//
// Package comfy imports nothing internal to the project.
package comfy
