package cork

import (
	"net"
	"testing"
)

// countConn counts the writes that reach the connection.
type countConn struct {
	net.Conn
	writes int
	bytes  []byte
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes++
	c.bytes = append(c.bytes, p...)
	return len(p), nil
}

func TestCorkedWritesGoOutTogether(t *testing.T) {
	under := &countConn{}
	c := &Conn{Conn: under}
	c.Cork()
	for _, s := range []string{"one ", "two ", "three"} {
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if under.writes != 0 {
		t.Fatalf("%d writes reached the connection while corked", under.writes)
	}
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
	if under.writes != 1 || string(under.bytes) != "one two three" {
		t.Errorf("after Uncork: %d writes of %q, want 1 of %q", under.writes, under.bytes, "one two three")
	}
	if _, err := c.Write([]byte("!")); err != nil || under.writes != 2 {
		t.Errorf("an uncorked write did not go out at once: %d writes, %v", under.writes, err)
	}
}
