package storetest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

func leaseCases() []testCase {
	return []testCase{
		{"AcquireFree", testLeaseAcquireFree},
		{"RenewOwn", testLeaseRenewOwn},
		{"HeldByOther", testLeaseHeldByOther},
		{"TakenAfterExpiry", testLeaseTakenAfterExpiry},
		{"Release", testLeaseRelease},
		{"Names", testLeaseNames},
		{"Concurrent", testLeaseConcurrent},
	}
}

const leaseName = "health-leader"

// acquire tries to take name for holder at now with a 10s TTL.
func acquire(t *testing.T, s store.Store, name, holder string, now time.Time) bool {
	t.Helper()
	ok, err := s.LeaseAcquire(t.Context(), &store.LeaseParams{Name: name, Holder: holder, TTL: 10 * time.Second, Now: now})
	must(t, "LeaseAcquire", err)
	return ok
}

// wantHeld checks that other cannot take lease name from holder at now.
func wantHeld(t *testing.T, s store.Store, name, holder, other string, now time.Time) {
	t.Helper()
	if acquire(t, s, name, other, now) {
		t.Fatalf("%s took lease %s at %v while %s held it", other, name, now, holder)
	}
}

func testLeaseAcquireFree(t *testing.T, s store.Store) {
	if !acquire(t, s, leaseName, replicaA, at(0)) {
		t.Fatal("LeaseAcquire of a free lease = false, want true")
	}
	wantHeld(t, s, leaseName, replicaA, replicaB, at(5))
}

func testLeaseRenewOwn(t *testing.T, s store.Store) {
	acquire(t, s, leaseName, replicaA, at(0)) // until 10
	if !acquire(t, s, leaseName, replicaA, at(8)) {
		t.Fatal("renewing one's own lease = false, want true")
	}
	// Renewed at 8 for 10s: still held at 15, past the first expiry.
	wantHeld(t, s, leaseName, replicaA, replicaB, at(15))
	if !acquire(t, s, leaseName, replicaA, at(15)) {
		t.Fatal("second renewal = false, want true")
	}
}

func testLeaseHeldByOther(t *testing.T, s store.Store) {
	acquire(t, s, leaseName, replicaA, at(0))
	for _, sec := range []int{0, 1, 9} {
		wantHeld(t, s, leaseName, replicaA, replicaB, at(sec))
	}
	// The refused attempts did not extend or steal anything: A still renews.
	if !acquire(t, s, leaseName, replicaA, at(9)) {
		t.Fatal("holder refused after others' failed attempts")
	}
}

func testLeaseTakenAfterExpiry(t *testing.T, s store.Store) {
	acquire(t, s, leaseName, replicaA, at(0)) // until 10
	wantHeld(t, s, leaseName, replicaA, replicaB, at(10).Add(-time.Millisecond))
	if !acquire(t, s, leaseName, replicaB, at(10).Add(time.Millisecond)) {
		t.Fatal("LeaseAcquire of an expired lease = false, want true")
	}
	wantHeld(t, s, leaseName, replicaB, replicaA, at(11))
}

func testLeaseRelease(t *testing.T, s store.Store) {
	acquire(t, s, leaseName, replicaA, at(0))
	must(t, "LeaseRelease by non-holder", s.LeaseRelease(t.Context(), leaseName, replicaB))
	wantHeld(t, s, leaseName, replicaA, replicaB, at(1))

	must(t, "LeaseRelease", s.LeaseRelease(t.Context(), leaseName, replicaA))
	if !acquire(t, s, leaseName, replicaB, at(2)) {
		t.Fatal("LeaseAcquire after release = false, want true")
	}
	must(t, "LeaseRelease of an unknown lease", s.LeaseRelease(t.Context(), "never-taken", replicaA))
}

func testLeaseNames(t *testing.T, s store.Store) {
	if !acquire(t, s, "instance:10.0.0.1:8001", replicaA, at(0)) {
		t.Fatal("first lease refused")
	}
	if !acquire(t, s, "instance:10.0.0.1:8002", replicaB, at(0)) {
		t.Fatal("a lease of another name was refused")
	}
	wantHeld(t, s, "instance:10.0.0.1:8001", replicaA, replicaB, at(1))
	wantHeld(t, s, "instance:10.0.0.1:8002", replicaB, replicaA, at(1))
}

// testLeaseConcurrent races many holders for one free lease: exactly one wins.
func testLeaseConcurrent(t *testing.T, s store.Store) {
	const holders = 16
	var (
		wins atomic.Int32
		wg   sync.WaitGroup
	)
	errs := make(chan error, holders)
	for i := range holders {
		wg.Go(func() {
			ok, err := s.LeaseAcquire(t.Context(), &store.LeaseParams{
				Name: leaseName, Holder: "replica-" + string(rune('a'+i)), TTL: 10 * time.Second, Now: at(0),
			})
			if err != nil {
				errs <- err
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("LeaseAcquire: %v", err)
	}
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d holders won the lease, want 1", n)
	}
}
