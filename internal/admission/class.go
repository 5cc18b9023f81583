package admission

import "time"

// Class names a kind of work admitted on limits of its own. The classes
// share the process's memory guard and its metrics (by a class label), so
// that one configuration section and one dashboard cover every kind of
// work the core takes on.
type Class string

// The classes of work the core admits.
const (
	// ClassGraphQL is the GraphQL API's HTTP requests: many, short.
	ClassGraphQL Class = "graphql"
	// ClassFlight is Arrow Flight exports: few, long, each holding a
	// database connection for its whole length.
	ClassFlight Class = "flight"
	// ClassObservers is observer deliveries (webhooks, Slack, email): they
	// wait on other people's servers, not on the core.
	ClassObservers Class = "observers"
)

// Classes lists every class, in a fixed order.
var Classes = []Class{ClassGraphQL, ClassFlight, ClassObservers}

// Limits are one class's bounds. Each field is the Options field of the
// same name, and its zero means what that field's zero means.
type Limits struct {
	MaxConcurrent     int
	MaxPerTenant      int
	MaxQueue          int
	MaxQueuePerTenant int
	QueueTimeout      time.Duration
	Congestion        time.Duration
	CongestedWait     time.Duration
}

// Config is a process's admission: the limits of each class and what the
// classes share.
type Config struct {
	GraphQL, Flight, Observers Limits
	// MemoryLimit, MemoryThreshold and HeapInUse configure the one memory
	// guard every class consults (NewMemory).
	MemoryLimit     uint64
	MemoryThreshold float64
	HeapInUse       func() uint64
	// RetryAfter is the delay a refused client is told to wait, in every
	// class (default 1s).
	RetryAfter time.Duration
	// Now is the clock congestion is timed by (default time.Now).
	Now func() time.Time
	// Metrics, when set, counts every class's decisions, labelled by class.
	Metrics *Metrics
}

// Admitters are a process's admission controllers, one per class, built
// by Build from one Config. Each is a core.Admitter.
type Admitters struct {
	GraphQL, Flight, Observers *Controller
}

// Of returns the controller of class c, nil for a class it does not know.
func (a Admitters) Of(c Class) *Controller {
	switch c {
	case ClassGraphQL:
		return a.GraphQL
	case ClassFlight:
		return a.Flight
	case ClassObservers:
		return a.Observers
	}
	return nil
}

// Build returns the controller of each class: each with its own limits
// and queue, one memory guard shared by all, and c.Metrics (when set)
// observing all of them by class. Call it once per process: the GraphQL
// handler takes GraphQL, the Flight service Flight, the observer workers
// Observers.
func Build(c Config) Admitters {
	mem := NewMemory(c.MemoryLimit, c.MemoryThreshold, c.HeapInUse)
	var observe func(Decision)
	if c.Metrics != nil {
		observe = c.Metrics.Observe
	}
	build := func(class Class, l Limits) *Controller {
		return New(Options{
			Class: class, MaxConcurrent: l.MaxConcurrent, MaxPerTenant: l.MaxPerTenant,
			MaxQueue: l.MaxQueue, MaxQueuePerTenant: l.MaxQueuePerTenant, QueueTimeout: l.QueueTimeout,
			Congestion: l.Congestion, CongestedWait: l.CongestedWait,
			Memory: mem, RetryAfter: c.RetryAfter, Now: c.Now, Observe: observe,
		})
	}
	return Admitters{
		GraphQL:   build(ClassGraphQL, c.GraphQL),
		Flight:    build(ClassFlight, c.Flight),
		Observers: build(ClassObservers, c.Observers),
	}
}
