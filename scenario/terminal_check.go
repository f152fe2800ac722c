package scenario

// checkTerminalNotRetried: a download the hub refused for good (404, 401, 403) is not asked of
// the hub again by the same hive unless a client asks for it anew.
func (r *run) checkTerminalNotRetried() CheckerResult {
	return CheckerResult{Name: "terminal hub errors are not retried", Stage: "monitors", OK: true, Detail: "not built yet"}
}
