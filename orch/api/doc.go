// Package api holds the wire types of the rbee core: the messages components send each other,
// the records they exchange, and the machine-readable error codes every component uses.
//
// Messages are plain values (no pointers, maps or functions) so that the simulator can print
// them canonically for its trace hash and the real runtime can encode them as JSON.
package api
