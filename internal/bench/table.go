package bench

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Table is one scenario's result: a title, a header and rows, printed as an
// aligned Markdown table, with notes under it.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
	Notes  []string
	// Then are tables that detail this one (per round, say), printed after
	// its notes.
	Then []*Table
}

// Row returns the row whose first cell is name, or nil.
func (t *Table) Row(name string) []string {
	for _, r := range t.Rows {
		if len(r) > 0 && r[0] == name {
			return r
		}
	}
	return nil
}

// Cell returns the cell of row name under column col, or "".
func (t *Table) Cell(name, col string) string {
	r := t.Row(name)
	for i, h := range t.Header {
		if h == col && r != nil && i < len(r) {
			return r[i]
		}
	}
	return ""
}

// add appends a row.
func (t *Table) add(cells ...string) { t.Rows = append(t.Rows, cells) }

// note appends a note line.
func (t *Table) note(format string, args ...any) {
	t.Notes = append(t.Notes, fmt.Sprintf(format, args...))
}

// Print writes the table in Markdown, columns padded to line up.
func (t *Table) Print(w io.Writer) {
	width := make([]int, len(t.Header))
	for i, h := range t.Header {
		width[i] = max(3, utf8.RuneCountInString(h))
	}
	for _, r := range t.Rows {
		for i, c := range r {
			if i < len(width) {
				width[i] = max(width[i], utf8.RuneCountInString(c))
			}
		}
	}
	fmt.Fprintf(w, "### %s\n\n", t.Title)
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i := range width {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			b.WriteString(" " + c + strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)) + " |")
		}
		fmt.Fprintln(w, b.String())
	}
	line(t.Header)
	sep := make([]string, len(width))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range t.Rows {
		line(r)
	}
	if len(t.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range t.Notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
	for _, sub := range t.Then {
		fmt.Fprintln(w)
		sub.Print(w)
	}
}

// verdict is the result cell: "pass", or "gap: " and how far off.
func verdict(ok bool, gap string) string {
	if ok {
		return "pass"
	}
	return "gap: " + gap
}
