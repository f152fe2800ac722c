package real

import (
	"fmt"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Port is an external system's adapter at an address: the inference engine, the process
// table, the model hub. Unlike a node it is ordinary concurrent Go code: it may block on I/O
// and run goroutines, and it answers by calling the Send it was built with.
//
// Deliver is called from the sending node's goroutine (or the transport's), so it must be
// safe for concurrent use and must not block for long: start a goroutine for slow I/O.
// Messages from one sender arrive in the order they were sent.
type Port interface {
	Deliver(from node.Addr, m node.Msg)
	// Close stops the port: its goroutines end and its connections close. Called once, by
	// Runtime.Stop.
	Close() error
}

// LocalOnly is implemented by a port that only the nodes of its own Runtime may use: a
// message from another OS process (Runtime.Deliver, the transport's entry) to such a port is
// dropped with a warning. The process table is one: any process holding the cluster's key
// (or, in dev mode, any local user) could otherwise have it spawn programs of its choosing.
type LocalOnly interface {
	LocalOnly() bool
}

// Send sends m from a port's own address to another address (a node of this Runtime, or a
// remote one through Config.Remote). It never blocks and is safe for concurrent use.
type Send func(to node.Addr, m node.Msg)

// AddPort registers a port at addr. mk builds it with the Send it must use to answer; it runs
// once, inside AddPort. A port is up from AddPort to Stop: it never crashes with a node.
func (rt *Runtime) AddPort(addr node.Addr, mk func(send Send) Port) error {
	if addr == "" || mk == nil {
		return fmt.Errorf("real: AddPort(%q): the address and the constructor are required", addr)
	}
	rt.mu.Lock()
	if rt.stopped {
		rt.mu.Unlock()
		return fmt.Errorf("real: AddPort(%q): %w", addr, ErrStopped)
	}
	if _, ok := rt.procs[addr]; ok {
		rt.mu.Unlock()
		return fmt.Errorf("real: AddPort(%q): the address is already taken by a node", addr)
	}
	if _, ok := rt.ports[addr]; ok {
		rt.mu.Unlock()
		return fmt.Errorf("real: AddPort(%q): the address is already taken by a port", addr)
	}
	rt.ports[addr] = nil // reserved while mk runs
	rt.mu.Unlock()
	p := mk(func(to node.Addr, m node.Msg) { rt.send(addr, to, m) })
	rt.mu.Lock()
	rt.ports[addr] = p
	rt.mu.Unlock()
	if p == nil {
		return fmt.Errorf("real: AddPort(%q): the constructor returned no port", addr)
	}
	return nil
}

// port returns the port at addr, or nil.
func (rt *Runtime) port(addr node.Addr) Port {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.ports[addr]
}

// Has reports whether addr is a node or a port of this Runtime (up or down).
func (rt *Runtime) Has(addr node.Addr) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	_, isNode := rt.procs[addr]
	_, isPort := rt.ports[addr]
	return isNode || isPort
}

// Addrs returns every node and port address of this Runtime, sorted.
func (rt *Runtime) Addrs() []node.Addr {
	all := rt.addrs()
	rt.mu.Lock()
	for a := range rt.ports {
		all = append(all, a)
	}
	rt.mu.Unlock()
	sortAddrs(all)
	return all
}
