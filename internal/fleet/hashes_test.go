package fleet

import (
	"testing"
	"time"
)

// TestHashesReadBeforeAChangeAreNotKept: hashes read while a catalogue
// change made the fleet forget them are not kept as fresh.
func TestHashesReadBeforeAChangeAreNotKept(t *testing.T) {
	var c catalogs
	now := time.Now()
	_, gen := c.hashes(now) // Index starts reading the states
	c.forgetHashes()        // a catalogue changes meanwhile
	c.setHashes(map[string]string{"a1": "old"}, now, gen)
	if h, _ := c.hashes(now); h != nil {
		t.Errorf("hashes read before the change were kept: %v", h)
	}
	_, gen = c.hashes(now)
	c.setHashes(map[string]string{"a1": "new"}, now, gen)
	if h, _ := c.hashes(now); h["a1"] != "new" {
		t.Errorf("hashes read after the change: %v, want kept", h)
	}
	if h, _ := c.hashes(now.Add(hashesFresh)); h != nil {
		t.Errorf("hashes kept past hashesFresh: %v", h)
	}
}
