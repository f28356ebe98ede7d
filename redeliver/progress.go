package redeliver

import "sync"

// Steps of a run, as Progress reports them.
const (
	// StepCreate is a replay making the rows of the deliveries it will publish.
	StepCreate = "create"
	// StepPublish is redeliveries being published and confirmed.
	StepPublish = "publish"
)

// Progress is how far a run has got: Done of Total in Step.
type Progress struct {
	Step  string
	Done  int
	Total int
}

// Option tunes Publish and Replay; none changes what they do, only what they report.
type Option func(*settings)

type settings struct {
	progress func(Progress)
}

// WithProgress has fn told how far the run has got after each row a replay makes and each
// redelivery the broker confirms. fn is called one call at a time, with Done growing, from
// the goroutines doing the work: it must be quick.
func WithProgress(fn func(Progress)) Option {
	return func(s *settings) { s.progress = fn }
}

// reporter counts one step and tells the progress function, if any, one call at a time.
type reporter struct {
	fn    func(Progress)
	step  string
	total int
	mu    sync.Mutex
	done  int
}

func newReporter(opts []Option, step string, total int) *reporter {
	var s settings
	for _, o := range opts {
		o(&s)
	}
	return &reporter{fn: s.progress, step: step, total: total}
}

// add counts one more done.
func (r *reporter) add() {
	if r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done++
	r.fn(Progress{Step: r.step, Done: r.done, Total: r.total})
}
