package violations

import . "time"

func dotClock() Time {
	return Now() // want time
}
