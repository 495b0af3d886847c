package pgstore

import (
	"github.com/jackc/pgx/v5"
)

// queries are the store's SQL, built once with the schema's quoted name:
// no statement depends on search_path, and none is built from data.
type queries struct {
	updateLock    string
	bucketNames   string
	bucketExists  string
	ensureBuckets string
	get           string
	put           string
	del           string
	// Cursor pages: $1 bucket, then the bound key (if any), then the limit.
	first, last, ge, gt, lt string
}

func newQueries(schema string) queries {
	kv := pgx.Identifier{schema, "kv"}.Sanitize()
	buckets := pgx.Identifier{schema, "buckets"}.Sanitize()
	page := func(where, order string) string {
		return "SELECT key, value FROM " + kv + " WHERE bucket = $1" + where + " ORDER BY key" + order
	}
	return queries{
		updateLock:    "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))",
		bucketNames:   "SELECT name FROM " + buckets,
		bucketExists:  "SELECT EXISTS (SELECT 1 FROM " + buckets + " WHERE name = $1)",
		ensureBuckets: "INSERT INTO " + buckets + " (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING",
		get:           "SELECT value FROM " + kv + " WHERE bucket = $1 AND key = $2",
		put: "INSERT INTO " + kv + " (bucket, key, value) VALUES ($1, $2, $3) " +
			"ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value",
		del:   "DELETE FROM " + kv + " WHERE bucket = $1 AND key = $2",
		first: page("", " LIMIT $2"),
		last:  page("", " DESC LIMIT $2"),
		ge:    page(" AND key >= $2", " LIMIT $3"),
		gt:    page(" AND key > $2", " LIMIT $3"),
		lt:    page(" AND key < $2", " DESC LIMIT $3"),
	}
}
