package clean

import "time"

// late calls the method Time.After on a parameter that shadows the time package: go/types
// tells it from the package function time.After.
func late(now, time time.Time) bool {
	return time.After(now)
}
