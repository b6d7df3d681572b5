package bench

import "fmt"

// trivialPrompt is a zero-duration API-format workflow: an 8x8 image saved
// as a PNG. The colour differs per i so that ComfyUI's cache never turns a
// run into a replay.
func trivialPrompt(i int) string { return imagePrompt(8, i, "bench") }

// imagePrompt is an API-format workflow that saves a size×size image of
// one colour (taken modulo 2^24) as a PNG with filename_prefix prefix (a
// "folder/name" prefix saves into a subfolder of ComfyUI's output folder).
func imagePrompt(size, colour int, prefix string) string {
	return fmt.Sprintf(`{"1":{"class_type":"EmptyImage","inputs":{"width":%d,"height":%d,"batch_size":1,"color":%d}},`+
		`"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":%q}}}`, size, size, colour%0x1000000, prefix)
}

// trivialTask is the POST /api/tasks body of trivialPrompt(i).
func trivialTask(i int) []byte { return taskBody(trivialPrompt(i)) }

// taskBody is the POST /api/tasks body that runs prompt.
func taskBody(prompt string) []byte {
	return []byte(`{"workflow":` + prompt + `}`)
}

// samplerPrompt is a text-to-image workflow whose sampler runs steps steps
// on checkpoint ckpt; seed keeps runs apart in ComfyUI's cache.
func samplerPrompt(seed, steps int, ckpt string) string {
	return fmt.Sprintf(`{"4":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":%q}},`+
		`"6":{"class_type":"CLIPTextEncode","inputs":{"text":"bench %d","clip":["4",1]}},`+
		`"7":{"class_type":"CLIPTextEncode","inputs":{"text":"","clip":["4",1]}},`+
		`"5":{"class_type":"EmptyLatentImage","inputs":{"width":64,"height":64,"batch_size":1}},`+
		`"3":{"class_type":"KSampler","inputs":{"seed":%d,"steps":%d,"cfg":7.0,"sampler_name":"euler","scheduler":"normal",`+
		`"denoise":1.0,"model":["4",0],"positive":["6",0],"negative":["7",0],"latent_image":["5",0]}},`+
		`"8":{"class_type":"VAEDecode","inputs":{"samples":["3",0],"vae":["4",2]}},`+
		`"9":{"class_type":"SaveImage","inputs":{"images":["8",0],"filename_prefix":"bench"}}}`, ckpt, seed, seed, steps)
}

// samplerTask is the POST /api/tasks body of samplerPrompt.
func samplerTask(seed, steps int, ckpt string) []byte {
	return []byte(`{"workflow":` + samplerPrompt(seed, steps, ckpt) + `}`)
}
