package storage

// ChangeFeed is implemented by a Backend that several processes share
// (vault/pgstore): a write that one process commits must reach what the
// others cache. The vault publishes the tenant of every write that can
// change a walk or a value, inside that write's transaction, and turns
// what it is delivered into the same change listeners that its own writes
// call. A Backend of one process (vault/boltstore) implements none: its
// own writes are all there is.
type ChangeFeed interface {
	// Publish records, inside the Update or Batch transaction tx of this
	// Backend, that topic changed; topic is non-empty UTF-8 without NUL,
	// at most MaxTopicSize bytes. It is delivered once tx commits, never
	// if tx rolls back, to the subscribers of every other open Backend on
	// the same store (other replicas, or another Open in this process),
	// and not to this Backend's own: the writer tells its own listeners
	// itself once its Update returned, before it acknowledges the write.
	// An error fails the transaction (return it from fn).
	Publish(tx Tx, topic string) error

	// Subscribe registers fn. Topics are delivered in commit order, one
	// call at a time from one goroutine, at least once each (a topic may
	// come twice); TopicAll stands for every topic when the backend cannot
	// tell what it missed (its change log was pruned past the last change
	// it saw, or reset). fn must not block for long: deliveries wait for
	// it, and Healthy turns false meanwhile.
	Subscribe(fn func(topic string))

	// Healthy reports whether every change that other processes committed
	// up to about now has been delivered. It is false from the moment
	// changes may be missed (the backend lost its way of hearing them, or
	// has not heard from the store within its timeout) until it has
	// caught up and delivered what it missed, and after Close. While it is
	// false a cache in front of this Backend must not answer from what it
	// holds. It is cheap (an atomic load): callers ask it on every cache
	// hit.
	Healthy() bool
}

// TopicAll is the topic a ChangeFeed delivers when any topic may have
// changed. Publishing it asks every other process to drop everything.
const TopicAll = "*"

// MaxTopicSize bounds a published topic (the vault's are tenant ids).
const MaxTopicSize = 255
