//go:build plant

package violations

func tagged() {
	go tagged() // want goroutine untyped
}
