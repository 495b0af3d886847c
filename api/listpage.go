package api

import (
	"net/url"
	"strconv"

	"github.com/egressd/egressd/vault"
)

// listPageParams are the query parameters of every paged list besides its
// filters.
var listPageParams = []string{"limit", "cursor"}

// listPage reads limit (1 to 1000, default 100) and cursor (the
// next_cursor of the page before; the vault checks it against the tenant
// and the filters) of a list's query.
func listPage(q url.Values) (vault.Page, error) {
	pg := vault.Page{Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > vault.MaxListLimit {
			return pg, errorf(ErrBadRequest, "limit: want a whole number from 1 to %d (default %d)", vault.MaxListLimit, vault.DefaultListLimit)
		}
		pg.Limit = n
	}
	return pg, nil
}
