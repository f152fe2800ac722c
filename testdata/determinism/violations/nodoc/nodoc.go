package nodoc // want pkgdoc untyped

// Thing exists so that the package is not empty.
type Thing int
