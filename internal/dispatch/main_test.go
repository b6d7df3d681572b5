package dispatch

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: every
// driver, run, collection and relay must be stopped and waited for.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
