package ports

// Progress reports the advance of long work (loading, generating or
// importing many keys, moving watermarks) to whoever watches: a bar on a
// terminal, periodic log lines otherwise (adapters/progress). The domain
// knows only this interface.
type Progress interface {
	// Begin starts reporting a task of total items ("loading keys into
	// vault cs", 500).
	Begin(what string, total int) ProgressTask
}

// ProgressTask is one task being reported. Add and Done may be called from
// several goroutines.
type ProgressTask interface {
	// Add records n more items done.
	Add(n int)
	// Done ends the task (whether or not every item was done).
	Done()
}

// NoProgress reports nothing.
type NoProgress struct{}

// Begin implements Progress.
func (NoProgress) Begin(string, int) ProgressTask { return noTask{} }

type noTask struct{}

func (noTask) Add(int) {}
func (noTask) Done()   {}
