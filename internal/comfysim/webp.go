package comfysim

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
)

// encodeWebP re-encodes an image file as a lossless WebP (VP8L), for
// /view?preview=webp. ComfyUI (PIL) writes lossy WebP; a client only sees
// image/webp either way. The encoder uses no transforms and no
// backward references: each channel is either one constant (a one-symbol
// code, zero bits per pixel) or a complete 8-bit code (8 bits per pixel).
func encodeWebP(data []byte) ([]byte, error) {
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	px := make([][4]uint8, 0, w*h) // g, r, b, a: VP8L symbol order
	constant := [4]bool{true, true, true, true}
	alpha := false
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			p := [4]uint8{c.G, c.R, c.B, c.A}
			for i := range p {
				if len(px) > 0 && p[i] != px[0][i] {
					constant[i] = false
				}
			}
			alpha = alpha || c.A != 0xff
			px = append(px, p)
		}
	}
	var bw bitWriter
	bw.bits(0x2f, 8)
	bw.bits(uint64(w-1), 14)
	bw.bits(uint64(h-1), 14)
	bw.bits(boolBit(alpha), 1)
	bw.bits(0, 3) // version
	bw.bits(0, 1) // no transform
	bw.bits(0, 1) // no color cache
	bw.bits(0, 1) // no meta prefix codes
	for i, size := range []int{280, 256, 256, 256} {
		if constant[i] {
			writeSimpleCode(&bw, px[0][i])
		} else {
			writeFlatCode(&bw, size)
		}
	}
	writeSimpleCode(&bw, 0) // distance
	for _, p := range px {
		for i := range p {
			if !constant[i] {
				bw.bits(uint64(reverse8(p[i])), 8)
			}
		}
	}
	return riffWebP(bw.bytes()), nil
}

// writeSimpleCode is a one-symbol prefix code: the symbol costs no bits.
func writeSimpleCode(bw *bitWriter, sym uint8) {
	bw.bits(1, 1) // simple code
	bw.bits(0, 1) // one symbol
	bw.bits(1, 1) // 8-bit symbol
	bw.bits(uint64(sym), 8)
}

// writeFlatCode gives the first 256 symbols of an alphabet length 8 and
// the rest length 0, through a code-length code in which lengths 0 and 8
// cost one bit each (0 -> "0", 8 -> "1").
func writeFlatCode(bw *bitWriter, size int) {
	bw.bits(0, 1) // normal code
	bw.bits(8, 4) // 4+8 = 12 code-length code lengths, up to symbol 8
	order := []int{17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8}
	for _, sym := range order {
		if sym == 0 || sym == 8 {
			bw.bits(1, 3)
		} else {
			bw.bits(0, 3)
		}
	}
	bw.bits(0, 1) // max_symbol = alphabet size
	for i := 0; i < size; i++ {
		bw.bits(boolBit(i < 256), 1)
	}
}

func boolBit(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func reverse8(b uint8) uint8 {
	b = b>>4 | b<<4
	b = (b&0xcc)>>2 | (b&0x33)<<2
	return (b&0xaa)>>1 | (b&0x55)<<1
}

// bitWriter packs bits least-significant first, as VP8L reads them.
type bitWriter struct {
	buf  []byte
	acc  uint64
	nacc uint
}

func (w *bitWriter) bits(v uint64, n uint) {
	w.acc |= v << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

func (w *bitWriter) bytes() []byte {
	if w.nacc > 0 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc, w.nacc = 0, 0
	}
	return w.buf
}

func riffWebP(vp8l []byte) []byte {
	chunk := len(vp8l)
	padded := chunk + chunk&1
	b := make([]byte, 0, 20+padded)
	b = append(b, "RIFF"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(4+8+padded))
	b = append(b, "WEBPVP8L"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(chunk))
	b = append(b, vp8l...)
	if chunk&1 == 1 {
		b = append(b, 0)
	}
	return b
}
