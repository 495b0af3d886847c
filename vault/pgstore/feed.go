package pgstore

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd/vault/storage"
)

var _ storage.ChangeFeed = (*Store)(nil)

// The change feed (storage.ChangeFeed) of the replicas on one schema.
//
// Publish inserts a row into the schema's change log (changes: seq,
// topic, origin, at; migration 0002) and NOTIFYs the schema's channel
// with its seq, both in the publishing Update's transaction: PostgreSQL
// sends the notification when, and only if, it commits. Updates hold the
// store's update lock until they commit, so seq order is commit order.
//
// Each Store has a listener (listener.go): a connection of its own, out
// of the pool, that LISTENs on the channel. On a notification, and every
// quarter of Options.ListenerTimeout when none comes, it reads the rows
// after the last seq it has seen and calls the subscribers with their
// topics, skipping the rows its own Store published (the vault tells its
// own listeners itself). So a notification is only a wake-up: the log is
// what is delivered, and a lost notification costs at most a poll.
//
// Healthy is true while the listener's connection is up, it has caught
// up since it connected, and it heard from the server within
// ListenerTimeout. When the connection is lost, Healthy turns false at
// once; the listener reconnects with backoff, LISTENs, reads every row it
// missed from the log, delivers them, and only then turns Healthy true.
// If the log was pruned past what it had seen (a listener down for longer
// than ChangeRetention), or went back (a schema made anew), it delivers
// storage.TopicAll. Every replica prunes rows older than ChangeRetention
// now and then.
//
// The listener needs a session of its own: behind a pooler in transaction
// mode (which LISTEN does not survive), point the DSN at PostgreSQL or at
// a session-mode pool.

// Publish implements storage.ChangeFeed: inside tx, an Update or Batch of
// this Store, it records that topic changed and notifies the other
// replicas' listeners once tx commits. A failure fails tx.
func (s *Store) Publish(stx storage.Tx, topic string) error {
	t, ok := stx.(*tx)
	switch {
	case !ok || t.s != s:
		return ErrForeignTx
	case !t.write:
		return storage.ErrTxNotWritable
	case !validTopic(topic):
		return ErrTopic
	case t.err != nil:
		return t.err
	}
	if _, err := t.ptx.Exec(t.ctx, s.feed.q.publish, topic, s.feed.origin, s.feed.channel); err != nil {
		return t.fail("publish", err)
	}
	return nil
}

// Subscribe implements storage.ChangeFeed: fn is called, from the
// listener's goroutine, with the topic of each change that other Stores
// on this schema publish, in commit order.
func (s *Store) Subscribe(fn func(topic string)) {
	l := s.feed
	l.subsMu.Lock()
	l.subs = append(l.subs, fn)
	l.subsMu.Unlock()
}

// Healthy implements storage.ChangeFeed: whether every change that other
// Stores on this schema committed up to about ListenerTimeout ago has been
// delivered. False after Close.
func (s *Store) Healthy() bool { return s.feed.healthy.Load() }

func validTopic(t string) bool {
	return t != "" && len(t) <= storage.MaxTopicSize && utf8.ValidString(t) && !containsNUL(t)
}

// channelName is the schema's NOTIFY channel, "<schema>_changes"; a name
// over PostgreSQL's 63 bytes (it would be cut, and pg_notify refuses it)
// becomes one of a hash of the schema.
func channelName(schema string) string {
	if c := schema + "_changes"; len(c) <= 63 {
		return c
	}
	sum := sha256.Sum256([]byte(schema))
	return "egressd_" + hex.EncodeToString(sum[:12]) + "_changes"
}

// newOrigin is a Store's id in the change log's origin column.
func newOrigin() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// feedQueries are the change feed's SQL, built once with the schema's
// quoted name.
type feedQueries struct {
	// publish: $1 topic, $2 origin, $3 channel.
	publish string
	// listen: LISTEN on the channel.
	listen string
	// position: where a new listener starts (every change so far is in
	// what its Store reads from now on).
	position string
	// read: $1 the last seq seen, $2 a page size; the pruned-through seq,
	// the log's highest seq, then the next rows (NULL when none), each
	// with its age at the server's clock in seconds; one snapshot.
	read string
	// prune: $1 the retention in seconds; deletes older rows and raises
	// changes_pruned.through past them.
	prune string
}

func newFeedQueries(schema, channel string) feedQueries {
	changes := pgx.Identifier{schema, "changes"}.Sanitize()
	pruned := pgx.Identifier{schema, "changes_pruned"}.Sanitize()
	return feedQueries{
		publish: "WITH c AS (INSERT INTO " + changes + " (topic, origin) VALUES ($1, $2) RETURNING seq) " +
			"SELECT pg_notify($3, seq::text) FROM c",
		listen:   "LISTEN " + pgx.Identifier{channel}.Sanitize(),
		position: "SELECT greatest((SELECT coalesce(max(seq), 0) FROM " + changes + "), (SELECT through FROM " + pruned + "))",
		read: "SELECT p.through, m.top, c.seq, c.topic, c.origin, extract(epoch FROM clock_timestamp() - c.at)::float8 " +
			"FROM (SELECT through FROM " + pruned + ") p " +
			"CROSS JOIN (SELECT coalesce(max(seq), 0) AS top FROM " + changes + ") m " +
			"LEFT JOIN LATERAL (SELECT seq, topic, origin, at FROM " + changes + " WHERE seq > $1 ORDER BY seq LIMIT $2) c ON true " +
			"ORDER BY c.seq",
		prune: "WITH d AS (DELETE FROM " + changes + " WHERE at < clock_timestamp() - make_interval(secs => $1::float8) RETURNING seq) " +
			"UPDATE " + pruned + " SET through = greatest(through, (SELECT max(seq) FROM d)) WHERE EXISTS (SELECT 1 FROM d)",
	}
}
