//go:build !plant

package violations

func tagged() {
	select {} // want select untyped
}
