//go:build plant

package scenario

func plantCompiled() bool { return true }
