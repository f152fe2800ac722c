// Package violations plants one of each determinism violation for
// TestDeterminismCheckerCatchesViolations. Every offending line ends in a "want KIND" comment;
// "untyped" after the kind means the syntactic fallback alone must find it too.
package violations
