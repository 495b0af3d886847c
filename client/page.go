package client

import (
	"errors"
	"net/url"
	"strconv"
)

// errPageLoop is a server that answered the cursor it was given.
var errPageLoop = errors.New("client: the server answered the same cursor again")

// setPage sets a list's limit (when not zero) and cursor (when not empty).
func setPage(q url.Values, limit int, cursor string) {
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	setIf(q, "cursor", cursor)
}

// follow calls page with cursor, then with each next cursor it returns,
// until one is empty or page fails.
func follow(cursor string, page func(cursor string) (next string, err error)) error {
	for {
		next, err := page(cursor)
		if err != nil || next == "" {
			return err
		}
		if next == cursor {
			return errPageLoop
		}
		cursor = next
	}
}

// eachOf calls fn with each of a page's rows, unless the page failed.
func eachOf[T any](rows []T, err error, fn func(T) error) error {
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}
