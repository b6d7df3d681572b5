package comfysim

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
)

// solidJPEG encodes a w×h image of colour c as a sampler preview is sent:
// JPEG at quality 95 (server.py send_image).
func solidJPEG(w, h int, c [4]uint8) ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	col := color.RGBA{c[0], c[1], c[2], 255}
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = col.R, col.G, col.B, col.A
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
