package violations

import t "time"

func clock() {
	_ = t.Now()                      // want time untyped
	t.Sleep(t.Second)                // want time untyped
	<-t.After(t.Second)              // want time untyped
	t.AfterFunc(t.Second, func() {}) // want time untyped
	_ = t.NewTimer(t.Second)         // want time untyped
	_ = t.NewTicker(t.Second)        // want time untyped
	_ = t.Tick(t.Second)             // want time untyped
	_ = t.Since(t.Time{})            // want time untyped
	_ = t.Until(t.Time{})            // want time untyped
	now := t.Now                     // want time untyped
	_ = now
}
