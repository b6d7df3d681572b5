package comfysim

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/adler32"
	"hash/crc32"
	"image"
	"image/color"
	_ "image/gif" // LoadImage of uploaded GIFs
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"sync"
)

// Images in the simulator are solid colour (see the package doc), which lets
// SaveImage write a real PNG of any size in microseconds: every row after the
// first is PNG's "Up" filter over zeros, and the first row is "Sub" with one
// literal pixel. The compressed form of everything after that first pixel
// depends only on the size, so it is deflated once per size and spliced
// behind a 4- or 5-byte stored block that carries the colour.

var pngSignature = []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}

// solidKey identifies an encoded solid-colour PNG.
type solidKey struct {
	w, h, bpp int
	rgba      [4]uint8
}

// restKey identifies the colour-independent tail of the image data.
type restKey struct{ w, h, bpp int }

type pngRest struct {
	deflated []byte // raw deflate stream, final block included
	adler    uint32 // adler32 of the uncompressed tail
	n        int    // length of the uncompressed tail
}

// pngCache bounds the memory of cached encodings; it is process-wide because
// every instance renders the same sizes.
var pngCache = struct {
	sync.Mutex
	solid  map[solidKey][]byte
	rest   map[restKey]*pngRest
	padded map[paddedKey][]byte
	// padding holds the padding chunk of each length, and paddedBytes the
	// bytes held in padded.
	padding     map[int][]byte
	paddedBytes int
}{solid: map[solidKey][]byte{}, rest: map[restKey]*pngRest{}, padded: map[paddedKey][]byte{}, padding: map[int][]byte{}}

// paddedKey identifies a padded PNG: the image and its padded size.
type paddedKey struct {
	solidKey
	size int
}

// paddedCacheMax bounds the bytes of cached padded PNGs.
const paddedCacheMax = 256 << 20

const pngCacheMax = 4096

// solidPNG returns a PNG of w x h pixels of one colour; bpp is 3 (RGB) or 4
// (RGBA). The returned slice is shared and must not be modified.
func solidPNG(w, h, bpp int, c [4]uint8) []byte {
	key := solidKey{w, h, bpp, c}
	pngCache.Lock()
	if b, ok := pngCache.solid[key]; ok {
		pngCache.Unlock()
		return b
	}
	pngCache.Unlock()
	rest := pngTail(w, h, bpp)
	b := assemblePNG(w, h, bpp, c, rest)
	pngCache.Lock()
	if len(pngCache.solid) >= pngCacheMax {
		clear(pngCache.solid)
	}
	pngCache.solid[key] = b
	pngCache.Unlock()
	return b
}

func pngTail(w, h, bpp int) *pngRest {
	key := restKey{w, h, bpp}
	pngCache.Lock()
	r, ok := pngCache.rest[key]
	pngCache.Unlock()
	if ok {
		return r
	}
	r = deflateTail(w, h, bpp)
	pngCache.Lock()
	if len(pngCache.rest) >= pngCacheMax {
		clear(pngCache.rest)
	}
	pngCache.rest[key] = r
	pngCache.Unlock()
	return r
}

// deflateTail compresses the rest of row 0 (zeros) and rows 1..h-1 (Up filter, zeros).
func deflateTail(w, h, bpp int) *pngRest {
	var out bytes.Buffer
	fw, _ := flate.NewWriter(&out, flate.BestSpeed)
	ad := adler32.New()
	n := 0
	write := func(p []byte) {
		fw.Write(p)
		ad.Write(p)
		n += len(p)
	}
	write(make([]byte, bpp*(w-1)))
	row := make([]byte, 1+bpp*w)
	row[0] = 2 // Up
	for y := 1; y < h; y++ {
		write(row)
	}
	fw.Close()
	return &pngRest{deflated: out.Bytes(), adler: ad.Sum32(), n: n}
}

func assemblePNG(w, h, bpp int, c [4]uint8, rest *pngRest) []byte {
	head := append([]byte{1}, c[:bpp]...) // Sub filter, first pixel
	z := make([]byte, 0, 2+5+len(head)+len(rest.deflated)+4)
	z = append(z, 0x78, 0x01)                                       // zlib header, fastest
	z = append(z, 0x00, byte(len(head)), 0, ^byte(len(head)), 0xff) // stored, non-final block
	z = append(z, head...)
	z = append(z, rest.deflated...)
	z = binary.BigEndian.AppendUint32(z, adler32Combine(adler32.Checksum(head), rest.adler, rest.n))

	colorType := byte(2)
	if bpp == 4 {
		colorType = 6
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, colorType

	b := make([]byte, 0, 8+25+len(z)+12+12)
	b = append(b, pngSignature...)
	b = appendChunk(b, "IHDR", ihdr)
	b = appendChunk(b, "IDAT", z)
	return appendChunk(b, "IEND", nil)
}

func appendChunk(b []byte, typ string, data []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	start := len(b)
	b = append(b, typ...)
	b = append(b, data...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:]))
}

// adler32Combine is zlib's adler32_combine: the checksum of A||B from the
// checksums of A and B and the length of B.
func adler32Combine(a1, a2 uint32, len2 int) uint32 {
	const base = 65521
	rem := uint32(len2 % base)
	sum1 := a1 & 0xffff
	sum2 := (rem * sum1) % base
	sum1 += (a2 & 0xffff) + base - 1
	sum2 += (a1 >> 16) + (a2 >> 16) + base - rem
	if sum1 >= base {
		sum1 -= base
	}
	if sum1 >= base {
		sum1 -= base
	}
	if sum2 >= base<<1 {
		sum2 -= base << 1
	}
	if sum2 >= base {
		sum2 -= base
	}
	return sum1 | sum2<<16
}

// paddingChunkType names the padding chunk: ancillary (lowercase first
// letter), private (lowercase second), safe to copy (lowercase last).
const paddingChunkType = "cfPd"

// paddedPNG returns the PNG p of the image key, padded to size bytes with
// a padding chunk right after IHDR (Options.OutputSize); p itself when it
// is already that large. The result is shared and must not be modified.
func paddedPNG(p []byte, key solidKey, size int) []byte {
	const afterIHDR = 8 + 25
	n := size - len(p) - 12 // a chunk's length, type and CRC take 12 bytes
	if n <= 0 {
		return p
	}
	pk := paddedKey{key, size}
	pngCache.Lock()
	defer pngCache.Unlock()
	if b, ok := pngCache.padded[pk]; ok {
		return b
	}
	chunk, ok := pngCache.padding[n]
	if !ok {
		data := make([]byte, n)
		rng := rand.NewChaCha8([32]byte{'c', 'o', 'm', 'f', 'y', 's', 'i', 'm'})
		_, _ = rng.Read(data)
		chunk = appendChunk(nil, paddingChunkType, data)
		if len(pngCache.padding) >= 16 {
			clear(pngCache.padding)
		}
		pngCache.padding[n] = chunk
	}
	b := make([]byte, 0, size)
	b = append(append(append(b, p[:afterIHDR]...), chunk...), p[afterIHDR:]...)
	if pngCache.paddedBytes+len(b) > paddedCacheMax {
		clear(pngCache.padded)
		pngCache.paddedBytes = 0
	}
	pngCache.padded[pk] = b
	pngCache.paddedBytes += len(b)
	return b
}

// withTextChunks inserts tEXt chunks right after IHDR, where PIL writes the
// pnginfo that SaveImage adds (the prompt and extra_pnginfo as JSON).
func withTextChunks(p []byte, texts [][2]string) []byte {
	const afterIHDR = 8 + 25
	size := len(p)
	for _, t := range texts {
		size += 12 + len(t[0]) + 1 + len(t[1])
	}
	b := make([]byte, 0, size)
	b = append(b, p[:afterIHDR]...)
	for _, t := range texts {
		data := make([]byte, 0, len(t[0])+1+len(t[1]))
		data = append(append(append(data, t[0]...), 0), t[1]...)
		b = appendChunk(b, "tEXt", data)
	}
	return append(b, p[afterIHDR:]...)
}

// decodedImage is what LoadImage keeps of a file: its size, whether it has
// alpha and the colour of its first pixel.
type decodedImage struct {
	w, h     int
	hasAlpha bool
	rgba     [4]uint8
}

// decodeImage reads an uploaded image (PNG, JPEG or GIF).
func decodeImage(data []byte) (decodedImage, error) {
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return decodedImage{}, err
	}
	bnd := img.Bounds()
	r, g, b, a := img.At(bnd.Min.X, bnd.Min.Y).RGBA()
	d := decodedImage{w: bnd.Dx(), h: bnd.Dy(), rgba: [4]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}}
	d.hasAlpha = format != "jpeg" && !opaqueModel(img.ColorModel())
	return d, nil
}

func opaqueModel(m color.Model) bool {
	switch m {
	case color.GrayModel, color.Gray16Model, color.YCbCrModel, color.CMYKModel:
		return true
	}
	return false
}

// reencode produces the /view variants: JPEG previews and the rgb / a channels.
func reencode(data []byte, format string, quality int, channel string) ([]byte, error) {
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	bnd := img.Bounds()
	var buf bytes.Buffer
	switch {
	case format == "jpeg":
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality})
	case channel == "a":
		alpha := image.NewNRGBA(bnd)
		for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
			for x := bnd.Min.X; x < bnd.Max.X; x++ {
				_, _, _, a := img.At(x, y).RGBA()
				alpha.SetNRGBA(x, y, color.NRGBA{A: uint8(a >> 8)})
			}
		}
		err = png.Encode(&buf, alpha)
	default: // rgb
		rgb := image.NewRGBA(bnd)
		for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
			for x := bnd.Min.X; x < bnd.Max.X; x++ {
				c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
				rgb.SetRGBA(x, y, color.RGBA{c.R, c.G, c.B, 0xff})
			}
		}
		err = png.Encode(&buf, rgb)
	}
	return buf.Bytes(), err
}
