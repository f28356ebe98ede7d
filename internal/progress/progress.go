// Package progress shows how far a long command has got: on a terminal one line redrawn in
// place, elsewhere (a pipe, a file, a CI log) a plain line now and then, so that neither a
// screen nor a log fills with thousands of lines.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// How often each kind of output is written at most.
const (
	// RedrawEvery is how often the line is redrawn on a terminal.
	RedrawEvery = 100 * time.Millisecond
	// LineEvery is how often a plain line is written elsewhere; a run shorter than this writes
	// none.
	LineEvery = 5 * time.Second
)

// Printer writes progress to one writer. It is safe for use by several goroutines.
type Printer struct {
	out      io.Writer
	terminal bool
	now      func() time.Time
	start    time.Time

	mu    sync.Mutex
	last  time.Time // when the last line was written
	drawn bool      // a line is on the terminal, not ended
}

// New makes a Printer to out, drawing in place when out is a terminal.
func New(out io.Writer) *Printer {
	f, ok := out.(*os.File)
	return NewPrinter(out, ok && term.IsTerminal(int(f.Fd())), time.Now)
}

// NewPrinter makes a Printer to out that draws in place if terminal says so, on the clock now.
func NewPrinter(out io.Writer, terminal bool, now func() time.Time) *Printer {
	t := now()
	return &Printer{out: out, terminal: terminal, now: now, start: t, last: t}
}

// Terminal reports whether the printer draws in place.
func (p *Printer) Terminal() bool { return p.terminal }

// Update shows that done of total things are what (a past participle and a noun, such as
// "published" and "redeliveries"). On a terminal the line is redrawn at most every
// RedrawEvery, and always when done reaches total; elsewhere a line is written at most every
// LineEvery.
func (p *Printer) Update(what, things string, done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	every := LineEvery
	if p.terminal {
		every = RedrawEvery
	}
	if now.Sub(p.last) < every && !(p.terminal && done == total) {
		return
	}
	p.last = now
	line := fmt.Sprintf("%s %d of %d %s (%d%%), %s", what, done, total, things, percent(done, total), rate(done, now.Sub(p.start)))
	if p.terminal {
		// Carriage return, the line, then erase what is left of a longer line drawn before.
		fmt.Fprintf(p.out, "\r%s\x1b[K", line)
		p.drawn = true
		return
	}
	fmt.Fprintln(p.out, line)
}

// Done ends the progress: a line drawn on the terminal is erased, so that what the command
// writes next, its summary, starts a clean line. It returns how long the run has taken.
func (p *Printer) Done() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.out, "\r\x1b[K")
		p.drawn = false
	}
	return p.now().Sub(p.start)
}

func percent(done, total int) int {
	if total <= 0 {
		return 100
	}
	return done * 100 / total
}

// rate writes how long it has taken and, past the first second, how fast it goes.
func rate(done int, took time.Duration) string {
	s := Duration(took)
	if took >= time.Second {
		s += fmt.Sprintf(", %.0f/s", float64(done)/took.Seconds())
	}
	return s
}

// Duration writes d for a person: to the millisecond under a second, to a tenth of a second
// under a minute, else to the second, without zero units ("20m", "1h", "1h5m").
func Duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
