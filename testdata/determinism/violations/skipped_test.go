package violations

import "time"

// Test files are not checked.
var _ = time.Now()
