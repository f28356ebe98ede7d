package progress

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)} }
func lines(b *bytes.Buffer) []string {
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}
func update(p *Printer, done, total int) { p.Update("published", "redeliveries", done, total) }
func advanceAndUpdate(c *clock, p *Printer, d time.Duration, done, total int) {
	c.advance(d)
	update(p, done, total)
}

func TestPlainLinesNowAndThen(t *testing.T) {
	var out bytes.Buffer
	c := newClock()
	p := NewPrinter(&out, false, c.now)
	// 1,000 updates over 12 s: a line at 5 s and one at 10 s, none for the rest.
	for i := 1; i <= 1000; i++ {
		advanceAndUpdate(c, p, 12*time.Millisecond, i, 1000)
	}
	took := p.Done()
	got := lines(&out)
	want := []string{
		"published 417 of 1000 redeliveries (41%), 5s, 83/s",
		"published 834 of 1000 redeliveries (83%), 10s, 83/s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("plain output:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
	if strings.ContainsAny(out.String(), "\r\x1b") {
		t.Errorf("plain output has terminal controls: %q", out.String())
	}
	if took != 12*time.Second {
		t.Errorf("Done = %v, want 12s", took)
	}
}

func TestShortPlainRunWritesNothing(t *testing.T) {
	var out bytes.Buffer
	c := newClock()
	p := NewPrinter(&out, false, c.now)
	for i := 1; i <= 3; i++ {
		advanceAndUpdate(c, p, 10*time.Millisecond, i, 3)
	}
	p.Done()
	if out.Len() != 0 {
		t.Errorf("a 30 ms run wrote %q, want nothing", out.String())
	}
}

func TestTerminalLineRedrawnInPlace(t *testing.T) {
	var out bytes.Buffer
	c := newClock()
	p := NewPrinter(&out, true, c.now)
	// Every 40 ms for a second: redrawn every 100 ms at most, and at the end.
	for i := 1; i <= 25; i++ {
		advanceAndUpdate(c, p, 40*time.Millisecond, i, 25)
	}
	p.Done()
	s := out.String()
	if strings.Contains(s, "\n") {
		t.Errorf("terminal output has a newline: %q", s)
	}
	draws := strings.Count(s, "\rpublished ")
	if draws < 8 || draws > 11 {
		t.Errorf("%d redraws in 1 s, want about 10: %q", draws, s)
	}
	if !strings.Contains(s, "\rpublished 25 of 25 redeliveries (100%), 1s, 25/s\x1b[K") {
		t.Errorf("last draw missing: %q", s)
	}
	if !strings.HasSuffix(s, "\r\x1b[K") {
		t.Errorf("Done did not erase the line: %q", s)
	}
}

func TestNewSeesAFileIsNoTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if New(f).Terminal() {
		t.Errorf("a regular file taken for a terminal")
	}
	var b bytes.Buffer
	if New(&b).Terminal() {
		t.Errorf("a buffer taken for a terminal")
	}
}

func TestDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{1234567 * time.Microsecond, "1.2s"},
		{35 * time.Millisecond, "35ms"},
		{90 * time.Second, "1m30s"},
		{5 * time.Minute, "5m"},
		{time.Hour, "1h"},
		{65 * time.Minute, "1h5m"},
	} {
		if got := Duration(tt.d); got != tt.want {
			t.Errorf("Duration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
