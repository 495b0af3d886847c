package vault

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/egressd/egressd/vault/storage"
)

// rows is everything a tenant holds of the three listed kinds, read from
// the rows' buckets alone (no index), in id order.
type rows struct {
	secrets   []Secret
	bindings  []Binding
	sandboxes []Sandbox
}

func scanRows(t *testing.T, s *Store, tenantID string) rows {
	t.Helper()
	var r rows
	err := s.view(func(tx storage.Tx) error {
		p := prefix(tenantID)
		walk := func(bucket []byte, fn func(v []byte) error) error {
			c := tx.Bucket(bucket).Cursor()
			for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
				if err := fn(v); err != nil {
					return err
				}
			}
			return nil
		}
		if err := walk(bSecrets, func(v []byte) error {
			var row storedSecret
			err := unmarshal(v, &row)
			r.secrets = append(r.secrets, row.Secret)
			return err
		}); err != nil {
			return err
		}
		if err := walk(bBindings, func(v []byte) error {
			var b Binding
			err := unmarshal(v, &b)
			r.bindings = append(r.bindings, b)
			return err
		}); err != nil {
			return err
		}
		return walk(bSandboxes, func(v []byte) error {
			var row storedSandbox
			err := unmarshal(v, &row)
			r.sandboxes = append(r.sandboxes, row.Sandbox)
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The filters' meaning, written out against the rows, as the lists
// answered before they had indexes.
func (r *rows) secretsMatching(f SecretFilter) []Secret {
	out := []Secret{}
	for _, sec := range r.secrets {
		if f.ResourceID != "" {
			if !slices.ContainsFunc(r.bindings, func(b Binding) bool {
				return b.SecretID == sec.ID && b.ResourceID == f.ResourceID && (f.ResourceType == "" || b.ResourceType == f.ResourceType)
			}) {
				continue
			}
		} else if f.ResourceType != "" && sec.ResourceType != f.ResourceType &&
			!slices.ContainsFunc(r.bindings, func(b Binding) bool { return b.SecretID == sec.ID && b.ResourceType == f.ResourceType }) {
			continue
		}
		if eq(f.Scope, sec.Scope) && eq(f.Type, sec.Type) && eq(f.WorkspaceID, sec.WorkspaceID) &&
			eq(f.OwnerUserID, sec.OwnerUserID) && eq(f.ExternalUserID, sec.ExternalUserID) &&
			eq(f.ExternalWorkspaceID, sec.ExternalWorkspaceID) && eq(f.Name, sec.Name) {
			out = append(out, sec)
		}
	}
	return out
}

func (r *rows) bindingsMatching(f BindingFilter) []Binding {
	out := []Binding{}
	for _, b := range r.bindings {
		if f.ExternalUserID != "" && !slices.ContainsFunc(r.sandboxes, func(x Sandbox) bool {
			return x.ID == b.ResourceID && x.ExternalUserID == f.ExternalUserID
		}) {
			continue
		}
		if eq(f.ResourceID, b.ResourceID) && eq(f.ResourceType, b.ResourceType) && eq(f.SecretID, b.SecretID) {
			out = append(out, b)
		}
	}
	return out
}

func (r *rows) sandboxesMatching(f SandboxFilter) []Sandbox {
	out := []Sandbox{}
	for _, x := range r.sandboxes {
		if eq(f.ResourceType, x.ResourceType) && eq(f.OwnerUserID, x.OwnerUserID) && eq(f.WorkspaceID, x.WorkspaceID) &&
			eq(f.ExternalUserID, x.ExternalUserID) && eq(f.ExternalWorkspaceID, x.ExternalWorkspaceID) &&
			eq(f.ExternalProjectID, x.ExternalProjectID) {
			out = append(out, x)
		}
	}
	return out
}

// eq: an empty filter value matches everything.
func eq[T ~string](want, have T) bool { return want == "" || want == have }

// allPages follows a list's cursors from the start with limit, checking
// each page's shape, and returns the rows of all pages.
func allPages[T any](t *testing.T, limit int, page func(Page) ([]T, string, error)) []T {
	t.Helper()
	out := []T{}
	pg := Page{Limit: limit}
	for n := 0; ; n++ {
		list, next, err := page(pg)
		if err != nil {
			t.Fatalf("page %d: %v", n, err)
		}
		if max := limit; max == 0 && len(list) > DefaultListLimit || max > 0 && len(list) > max {
			t.Fatalf("page %d: %d rows, limit %d", n, len(list), limit)
		}
		if next != "" && len(list) != cmpLimit(limit) {
			t.Fatalf("page %d: %d rows and a next cursor, limit %d", n, len(list), limit)
		}
		if next == "" && len(list) == 0 && n > 0 {
			t.Fatalf("page %d: empty, the last: the page before should have ended the list", n)
		}
		out = append(out, list...)
		if next == "" {
			return out
		}
		if n > 10000 {
			t.Fatal("no end")
		}
		pg.Cursor = next
	}
}

func cmpLimit(limit int) int {
	if limit == 0 {
		return DefaultListLimit
	}
	return limit
}

// indexSnapshot is every key of the lists' index buckets.
func indexSnapshot(t *testing.T, s *Store) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := s.view(func(tx storage.Tx) error {
		for _, name := range listIndexBuckets() {
			keys := []string{}
			tx.Bucket(name).ForEach(func(k, _ []byte) error {
				keys = append(keys, string(k))
				return nil
			})
			out[string(name)] = keys
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkIndexesExact checks that the indexes hold exactly what building
// them from the rows gives: no entry missing, none left over.
func checkIndexesExact(t *testing.T, s *Store) {
	t.Helper()
	kept := indexSnapshot(t, s)
	if _, err := s.RebuildListIndexes(); err != nil {
		t.Fatal(err)
	}
	built := indexSnapshot(t, s)
	for name, want := range built {
		if have := kept[name]; !slices.Equal(have, want) {
			t.Errorf("%s: the writes kept\n%q\nthe rows give\n%q", name, have, want)
		}
	}
}

func ids[T any](list []T, id func(T) string) []string {
	out := make([]string, len(list))
	for i, x := range list {
		out[i] = id(x)
	}
	return out
}

func secretID(s Secret) string             { return s.ID }
func bindingID(b Binding) string           { return b.ID }
func sandboxID(x Sandbox) string           { return x.ID }
func pick(r *rand.Rand, p []string) string { return p[r.IntN(len(p))] }

// maybe is one of p, or empty with probability 1/2.
func maybe(r *rand.Rand, p []string) string {
	if r.IntN(2) == 0 {
		return ""
	}
	return pick(r, p)
}

// TestListIndexesMatchScan runs random writes (creates, upserts that move
// fields, bindings, deletes, sandbox deletes that cascade) in two tenants
// and checks, again and again, that every list under random filters (one
// to three fields, values present and absent), whole and paged with
// random limits, returns exactly what filtering every row gives, in id
// order, and that the indexes hold exactly what the rows give.
//
// It runs with each way of combining filters: the lists leapfrogging
// (probeIDs 0: no list drives unless it is empty), a short list driving
// and the others looked up (the default, and any list driving).
func TestListIndexesMatchScan(t *testing.T) {
	defer func(n int) { probeIDs = n }(probeIDs)
	for _, n := range []int{0, 3, probeIDs, 1 << 30} {
		t.Run(fmt.Sprint("probe ", n), func(t *testing.T) {
			probeIDs = n
			testListIndexesMatchScan(t, uint64(n))
		})
	}
}

func testListIndexesMatchScan(t *testing.T, seed uint64) {
	s := openTest(t)
	r := rand.New(rand.NewPCG(15, seed))
	tenants := []string{mustTenant(t, s, "acme").ID, mustTenant(t, s, "globex").ID}
	users, workspaces := []string{"u1", "u2", "u3"}, []string{"w1", "w2"}
	extUsers, extWorkspaces, projects := []string{"e1", "e2", "e3"}, []string{"x1", "x2"}, []string{"p1", "p2"}
	names, types := []string{"A", "B", "C", "D"}, []string{"generic", "api_key", "oauth_token"}
	rts := []string{string(ResourceSandbox), string(ResourceComputer)}

	ops := 0
	write := func(tid string) {
		now := scanRows(t, s, tid)
		switch n := r.IntN(20); {
		case n < 4 || len(now.sandboxes) == 0:
			_, _, err := s.CreateSandbox(tid, SandboxInput{
				ResourceType: ResourceType(pick(r, rts)), OwnerUserID: maybe(r, users), WorkspaceID: maybe(r, workspaces),
				ExternalUserID: maybe(r, extUsers), ExternalWorkspaceID: maybe(r, extWorkspaces), ExternalProjectID: maybe(r, projects),
			})
			if err != nil {
				t.Fatal(err)
			}
		case n < 12:
			in := SecretInput{
				Name: pick(r, names), Value: "v", Type: pick(r, types), Scope: Scopes[r.IntN(len(Scopes))],
				OwnerUserID: maybe(r, users), WorkspaceID: maybe(r, workspaces), ExternalUserID: maybe(r, extUsers),
				ExternalWorkspaceID: maybe(r, extWorkspaces), AllowedHosts: []string{"api.example.com"},
			}
			switch in.Scope {
			case ScopeUser:
				in.OwnerUserID = pick(r, users)
			case ScopeExternalUser:
				in.ExternalUserID = pick(r, extUsers)
			case ScopeExternalWorkspace:
				in.ExternalWorkspaceID = pick(r, extWorkspaces)
			case ScopeWorkspace:
				in.WorkspaceID = pick(r, workspaces)
			}
			if in.Scope == ScopeResource || r.IntN(4) == 0 {
				x := now.sandboxes[r.IntN(len(now.sandboxes))]
				in.ResourceID, in.ResourceType = x.ID, x.ResourceType
				if r.IntN(2) == 0 {
					in.ExposeAsEnv = "ENV_" + in.Name
				}
			}
			if _, err := s.UpsertSecret(tid, in); err != nil {
				t.Fatal(err)
			}
		case n < 15 && len(now.secrets) > 0:
			sec, x := now.secrets[r.IntN(len(now.secrets))], now.sandboxes[r.IntN(len(now.sandboxes))]
			if _, err := s.CreateBinding(tid, BindingInput{SecretID: sec.ID, ResourceID: x.ID, ResourceType: x.ResourceType}); err != nil {
				t.Fatal(err)
			}
		case n < 17 && len(now.bindings) > 0:
			if err := s.DeleteBinding(tid, now.bindings[r.IntN(len(now.bindings))].ID); err != nil {
				t.Fatal(err)
			}
		case n < 19 && len(now.secrets) > 0:
			if err := s.DeleteSecret(tid, now.secrets[r.IntN(len(now.secrets))].ID); err != nil {
				t.Fatal(err)
			}
		case n == 19:
			if err := s.DeleteSandbox(tid, now.sandboxes[r.IntN(len(now.sandboxes))].ID); err != nil {
				t.Fatal(err)
			}
		}
		ops++
	}

	// someOf sets each of fields with probability p, to one of its values
	// or to a value no row holds.
	someOf := func(pool []string) string {
		if r.IntN(4) != 0 {
			return ""
		}
		if r.IntN(6) == 0 {
			return "absent"
		}
		return pick(r, pool)
	}
	check := func(tid string) {
		t.Helper()
		all := scanRows(t, s, tid)
		var sbxIDs, secIDs []string
		for _, x := range all.sandboxes {
			sbxIDs = append(sbxIDs, x.ID)
		}
		for _, x := range all.secrets {
			secIDs = append(secIDs, x.ID)
		}
		sbxIDs, secIDs = append(sbxIDs, "sbx_absent"), append(secIDs, "sec_absent")
		scopes := []string{}
		for _, sc := range Scopes {
			scopes = append(scopes, string(sc))
		}
		for range 40 {
			sf := SecretFilter{
				ResourceID: someOf(sbxIDs), ResourceType: ResourceType(someOf(rts)), Scope: Scope(someOf(scopes)),
				Type: someOf(types), WorkspaceID: someOf(workspaces), OwnerUserID: someOf(users),
				ExternalUserID: someOf(extUsers), ExternalWorkspaceID: someOf(extWorkspaces), Name: someOf(names),
			}
			if sf.ResourceType == "absent" || sf.Scope == "absent" || sf.Type == "absent" {
				sf.ResourceType, sf.Scope, sf.Type = "", "", ""
			}
			want := ids(all.secretsMatching(sf), secretID)
			whole, err := s.ListSecrets(tid, sf)
			if err != nil {
				t.Fatal(err)
			}
			limit := 1 + r.IntN(5)
			paged := allPages(t, limit, func(pg Page) ([]Secret, string, error) { return s.ListSecretsPage(tid, sf, pg) })
			if got := ids(whole, secretID); !slices.Equal(got, want) {
				t.Fatalf("after %d writes, secrets %+v:\n got %v\nwant %v", ops, sf, got, want)
			}
			if got := ids(paged, secretID); !slices.Equal(got, want) {
				t.Fatalf("after %d writes, secrets %+v by %d:\n got %v\nwant %v", ops, sf, limit, got, want)
			}

			bf := BindingFilter{ResourceID: someOf(sbxIDs), ResourceType: ResourceType(someOf(rts)), SecretID: someOf(secIDs), ExternalUserID: someOf(extUsers)}
			if bf.ResourceType == "absent" {
				bf.ResourceType = ""
			}
			wantB := ids(all.bindingsMatching(bf), bindingID)
			pagedB := allPages(t, limit, func(pg Page) ([]Binding, string, error) { return s.ListBindingsPage(tid, bf, pg) })
			if got := ids(pagedB, bindingID); !slices.Equal(got, wantB) {
				t.Fatalf("after %d writes, bindings %+v by %d:\n got %v\nwant %v", ops, bf, limit, got, wantB)
			}

			xf := SandboxFilter{
				ResourceType: ResourceType(someOf(rts)), OwnerUserID: someOf(users), WorkspaceID: someOf(workspaces),
				ExternalUserID: someOf(extUsers), ExternalWorkspaceID: someOf(extWorkspaces), ExternalProjectID: someOf(projects),
			}
			if xf.ResourceType == "absent" {
				xf.ResourceType = ""
			}
			wantX := ids(all.sandboxesMatching(xf), sandboxID)
			pagedX := allPages(t, limit, func(pg Page) ([]Sandbox, string, error) { return s.ListSandboxesPage(tid, xf, pg) })
			if got := ids(pagedX, sandboxID); !slices.Equal(got, wantX) {
				t.Fatalf("after %d writes, sandboxes %+v by %d:\n got %v\nwant %v", ops, xf, limit, got, wantX)
			}
		}
	}
	rounds := 8
	if testing.Short() {
		rounds = 3
	}
	for range rounds {
		for range 40 {
			write(tenants[r.IntN(2)])
		}
		for _, tid := range tenants {
			check(tid)
		}
		checkIndexesExact(t, s)
	}
}

// TestListPages pages through 250 secrets, bindings and sandboxes 100 at a
// time: 100, 100, 50, each row once, in id order, the last page without a
// cursor. Rows deleted and added between pages do not shift the pages:
// every row present throughout comes exactly once.
func TestListPages(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "shared", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
	for i := range 249 {
		mustUpsert(t, s, tn.ID, SecretInput{Name: fmt.Sprintf("k%d", i), Value: "v", Scope: ScopeExternalUser, ExternalUserID: "e", AllowedHosts: []string{"api.example.com"}})
	}
	for range 250 {
		x, _ := mustSandbox(t, s, tn.ID, SandboxInput{ExternalUserID: "e"})
		if _, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: x.ID}); err != nil {
			t.Fatal(err)
		}
	}
	all := scanRows(t, s, tn.ID)
	if len(all.secrets) != 250 || len(all.bindings) != 250 || len(all.sandboxes) != 250 {
		t.Fatalf("%d secrets, %d bindings, %d sandboxes", len(all.secrets), len(all.bindings), len(all.sandboxes))
	}
	check := func(t *testing.T, want []string, page func(Page) ([]string, string, error)) {
		var got []string
		pg := Page{Limit: 100}
		for i, n := range []int{100, 100, 50} {
			list, next, err := page(pg)
			if err != nil || len(list) != n || (next == "") != (i == 2) {
				t.Fatalf("page %d: %d rows, next %q, %v", i, len(list), next, err)
			}
			got, pg.Cursor = append(got, list...), next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("pages:\n%v\nwant\n%v", got, want)
		}
	}
	t.Run("secrets", func(t *testing.T) {
		check(t, ids(all.secrets, secretID), func(pg Page) ([]string, string, error) {
			l, n, err := s.ListSecretsPage(tn.ID, SecretFilter{}, pg)
			return ids(l, secretID), n, err
		})
	})
	t.Run("bindings", func(t *testing.T) {
		check(t, ids(all.bindings, bindingID), func(pg Page) ([]string, string, error) {
			l, n, err := s.ListBindingsPage(tn.ID, BindingFilter{SecretID: sec.ID}, pg)
			return ids(l, bindingID), n, err
		})
	})
	t.Run("sandboxes", func(t *testing.T) {
		check(t, ids(all.sandboxes, sandboxID), func(pg Page) ([]string, string, error) {
			l, n, err := s.ListSandboxesPage(tn.ID, SandboxFilter{ExternalUserID: "e"}, pg)
			return ids(l, sandboxID), n, err
		})
	})
	t.Run("writes between pages", func(t *testing.T) {
		first, next, err := s.ListSandboxesPage(tn.ID, SandboxFilter{}, Page{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		// One row of the page read and one of those to come go; new rows
		// come, some before the cursor's position, some after.
		gone := []string{first[10].ID, all.sandboxes[200].ID}
		for _, id := range gone {
			if err := s.DeleteSandbox(tn.ID, id); err != nil {
				t.Fatal(err)
			}
		}
		for range 20 {
			mustSandbox(t, s, tn.ID, SandboxInput{})
		}
		got := ids(first, sandboxID)
		for pg := (Page{Limit: 100, Cursor: next}); pg.Cursor != ""; {
			list, next, err := s.ListSandboxesPage(tn.ID, SandboxFilter{}, pg)
			if err != nil {
				t.Fatal(err)
			}
			got, pg.Cursor = append(got, ids(list, sandboxID)...), next
		}
		seen := map[string]int{}
		for _, id := range got {
			seen[id]++
		}
		for _, x := range all.sandboxes {
			if n := seen[x.ID]; n != 1 && !slices.Contains(gone, x.ID) || n > 1 {
				t.Errorf("%s seen %d times", x.ID, n)
			}
		}
		if !slices.IsSorted(got) {
			t.Error("not in id order")
		}
	})
}

// TestListCursorRefused: a cursor is good only for its tenant, list and
// filter; any other use, or a cursor altered, is refused as invalid
// without naming what it held.
func TestListCursorRefused(t *testing.T) {
	s := openTest(t)
	a, b := mustTenant(t, s, "acme"), mustTenant(t, s, "globex")
	for _, tid := range []string{a.ID, b.ID} {
		for i := range 5 {
			mustUpsert(t, s, tid, SecretInput{Name: fmt.Sprintf("k%d", i), Value: "v", Scope: ScopeExternalUser, ExternalUserID: "e", AllowedHosts: []string{"api.example.com"}})
			mustSandbox(t, s, tid, SandboxInput{ExternalUserID: "e"})
		}
	}
	f := SecretFilter{ExternalUserID: "e"}
	page, cursor, err := s.ListSecretsPage(a.ID, f, Page{Limit: 2})
	if err != nil || cursor == "" {
		t.Fatal(cursor, err)
	}
	if rest, _, err := s.ListSecretsPage(a.ID, f, Page{Limit: 2, Cursor: cursor}); err != nil || len(rest) != 2 || rest[0].ID <= page[1].ID {
		t.Fatalf("the cursor itself: %v %v", rest, err)
	}
	other := openTest(t) // another master key
	otherCursor, _ := func() (string, error) {
		tn := mustTenant(t, other, "acme")
		for i := range 3 {
			mustUpsert(t, other, tn.ID, SecretInput{Name: fmt.Sprintf("k%d", i), Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}})
		}
		_, c, err := other.ListSecretsPage(tn.ID, SecretFilter{}, Page{Limit: 1})
		return c, err
	}()
	altered := []byte(cursor)
	altered[len(altered)-1] ^= 1
	if altered[len(altered)-1] == cursor[len(cursor)-1] {
		t.Fatal("not altered")
	}
	secretsAfter := func(tid string, f SecretFilter, c string) error {
		_, _, err := s.ListSecretsPage(tid, f, Page{Cursor: c})
		return err
	}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"other tenant", secretsAfter(b.ID, f, cursor)},
		{"other filter", secretsAfter(a.ID, SecretFilter{ExternalUserID: "e2"}, cursor)},
		{"filter dropped", secretsAfter(a.ID, SecretFilter{}, cursor)},
		{"filter added", secretsAfter(a.ID, SecretFilter{ExternalUserID: "e", Name: "k1"}, cursor)},
		{"altered", secretsAfter(a.ID, f, string(altered))},
		{"cut", secretsAfter(a.ID, f, cursor[:len(cursor)-3])},
		{"not base64", secretsAfter(a.ID, f, "!!!!")},
		{"empty payload", secretsAfter(a.ID, f, "AQ")},
		{"huge", secretsAfter(a.ID, f, strings.Repeat("A", 100_000))},
		{"another vault's", secretsAfter(a.ID, SecretFilter{}, otherCursor)},
		{"on sandboxes", func() error {
			_, _, err := s.ListSandboxesPage(a.ID, SandboxFilter{ExternalUserID: "e"}, Page{Cursor: cursor})
			return err
		}()},
		{"on bindings", func() error { _, _, err := s.ListBindingsPage(a.ID, BindingFilter{}, Page{Cursor: cursor}); return err }()},
	} {
		var ve *ValidationError
		if !errors.Is(c.err, ErrInvalid) || !errors.As(c.err, &ve) || ve.Field != "cursor" {
			t.Errorf("%s: %v, want an invalid cursor", c.name, c.err)
			continue
		}
		for _, leak := range []string{a.ID, b.ID, page[0].ID, page[1].ID} {
			if strings.Contains(c.err.Error(), leak) {
				t.Errorf("%s: the refusal %q names %q", c.name, c.err, leak)
			}
		}
	}
}

// TestListLimits: 1 to 1000, zero is 100, anything else refused.
func TestListLimits(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	for range 120 {
		mustSandbox(t, s, tn.ID, SandboxInput{})
	}
	for _, c := range []struct {
		limit, want int
		ok          bool
	}{{0, 100, true}, {1, 1, true}, {1000, 120, true}, {-1, 0, false}, {1001, 0, false}} {
		list, _, err := s.ListSandboxesPage(tn.ID, SandboxFilter{}, Page{Limit: c.limit})
		_, _, serr := s.ListSecretsPage(tn.ID, SecretFilter{}, Page{Limit: c.limit})
		_, _, berr := s.ListBindingsPage(tn.ID, BindingFilter{}, Page{Limit: c.limit})
		if c.ok && (err != nil || serr != nil || berr != nil || len(list) != c.want) {
			t.Errorf("limit %d: %d rows, %v %v %v", c.limit, len(list), err, serr, berr)
		}
		if !c.ok {
			for _, err := range []error{err, serr, berr} {
				var ve *ValidationError
				if !errors.As(err, &ve) || ve.Field != "limit" {
					t.Errorf("limit %d: %v", c.limit, err)
				}
			}
		}
	}
	// A filter value no id can hold is refused, not looked up.
	for _, err := range []error{
		func() error {
			_, _, err := s.ListSecretsPage(tn.ID, SecretFilter{ExternalUserID: "a\x00b"}, Page{})
			return err
		}(),
		func() error {
			_, _, err := s.ListSandboxesPage(tn.ID, SandboxFilter{OwnerUserID: strings.Repeat("u", MaxIDLen+1)}, Page{})
			return err
		}(),
		func() error {
			_, _, err := s.ListBindingsPage(tn.ID, BindingFilter{SecretID: "s\nx"}, Page{})
			return err
		}(),
		func() error { _, _, err := s.ListSecretsPage(tn.ID, SecretFilter{Scope: "nope"}, Page{}); return err }(),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("bad filter value: %v", err)
		}
	}
}

// indexKeysWith lists the index keys that contain id.
func indexKeysWith(t *testing.T, s *Store, id string) []string {
	t.Helper()
	var found []string
	for name, keys := range indexSnapshot(t, s) {
		for _, k := range keys {
			if strings.Contains(k, id) {
				found = append(found, name+": "+strings.ReplaceAll(k, "\x00", "/"))
			}
		}
	}
	return found
}

// TestListIndexesFollowWrites checks each write's index maintenance: an
// upsert that changes a field moves its entry, a binding's type shows in
// its secret's resource_type until the last such binding goes, deletes
// remove every entry, a sandbox's delete those of all that goes with it.
func TestListIndexesFollowWrites(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	secretsOf := func(f SecretFilter) []string {
		t.Helper()
		l, err := s.ListSecrets(tn.ID, f)
		if err != nil {
			t.Fatal(err)
		}
		return ids(l, secretID)
	}
	in := SecretInput{Name: "k", Value: "v", Scope: ScopeUser, OwnerUserID: "u1", ExternalUserID: "e1", WorkspaceID: "w1", AllowedHosts: []string{"api.example.com"}}
	sec := mustUpsert(t, s, tn.ID, in).Secret
	in.ExternalUserID, in.WorkspaceID, in.Type = "e2", "", "api_key"
	if again := mustUpsert(t, s, tn.ID, in).Secret; again.ID != sec.ID {
		t.Fatal("not an update")
	}
	for _, c := range []struct {
		f    SecretFilter
		want bool
	}{
		{SecretFilter{ExternalUserID: "e1"}, false}, {SecretFilter{ExternalUserID: "e2"}, true},
		{SecretFilter{WorkspaceID: "w1"}, false}, {SecretFilter{Type: "generic"}, false}, {SecretFilter{Type: "api_key"}, true},
		{SecretFilter{OwnerUserID: "u1", Name: "k"}, true},
	} {
		if got := secretsOf(c.f); slices.Contains(got, sec.ID) != c.want {
			t.Errorf("after the upsert, %+v: %v", c.f, got)
		}
	}
	checkIndexesExact(t, s)

	// Bound to a computer twice over, then unbound one at a time.
	c1, _ := mustSandbox(t, s, tn.ID, SandboxInput{ResourceType: ResourceComputer, ExternalUserID: "e1"})
	c2, _ := mustSandbox(t, s, tn.ID, SandboxInput{ResourceType: ResourceComputer})
	b1, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: c1.ID, ResourceType: ResourceComputer})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: c2.ID, ResourceType: ResourceComputer})
	if err != nil {
		t.Fatal(err)
	}
	computer := SecretFilter{ResourceType: ResourceComputer}
	if got := secretsOf(computer); !slices.Equal(got, []string{sec.ID}) {
		t.Fatalf("bound to computers: %v", got)
	}
	if err := s.DeleteBinding(tn.ID, b1.ID); err != nil {
		t.Fatal(err)
	}
	if got := secretsOf(computer); !slices.Equal(got, []string{sec.ID}) {
		t.Fatalf("still bound to one computer: %v", got)
	}
	if err := s.DeleteBinding(tn.ID, b2.ID); err != nil {
		t.Fatal(err)
	}
	if got := secretsOf(computer); len(got) != 0 {
		t.Fatalf("bound to no computer: %v", got)
	}
	if found := indexKeysWith(t, s, b1.ID); len(found) != 0 {
		t.Errorf("deleted binding still indexed: %q", found)
	}
	checkIndexesExact(t, s)

	// A sandbox's delete takes its bindings, the secrets scoped to it and
	// their entries.
	x, _ := mustSandbox(t, s, tn.ID, SandboxInput{ExternalUserID: "e9", OwnerUserID: "u9", ExternalProjectID: "p9"})
	scoped := mustUpsert(t, s, tn.ID, SecretInput{Name: "own", Value: "v", Scope: ScopeResource, ResourceID: x.ID, AllowedHosts: []string{"api.example.com"}})
	shared, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: x.ID})
	if err != nil || scoped.Binding == nil {
		t.Fatal(scoped.Binding, err)
	}
	if got := secretsOf(SecretFilter{ResourceID: x.ID}); len(got) != 2 {
		t.Fatalf("secrets on the sandbox: %v", got)
	}
	if err := s.DeleteSandbox(tn.ID, x.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{x.ID, scoped.Secret.ID, scoped.Binding.ID, shared.ID} {
		if found := indexKeysWith(t, s, id); len(found) != 0 {
			t.Errorf("%s still indexed after the sandbox's delete: %q", id, found)
		}
	}
	if got := secretsOf(SecretFilter{ResourceType: ResourceSandbox}); len(got) != 0 {
		t.Errorf("secrets on sandboxes: %v", got)
	}
	if l, _ := s.ListSandboxes(tn.ID, SandboxFilter{ExternalUserID: "e9"}); len(l) != 0 {
		t.Errorf("deleted sandbox listed: %v", l)
	}
	checkIndexesExact(t, s)

	if err := s.DeleteSecret(tn.ID, sec.ID); err != nil {
		t.Fatal(err)
	}
	if found := indexKeysWith(t, s, sec.ID); len(found) != 0 {
		t.Errorf("deleted secret still indexed: %q", found)
	}
	checkIndexesExact(t, s)
}

// TestListIndexesBuiltOnOpen: a vault written before the lists had
// indexes (rows without entries, no version mark) gets them on its next
// Open, once; its lists are then what its rows say.
func TestListIndexesBuiltOnOpen(t *testing.T) {
	mk := NewMasterKey()
	s := openTest(t, func(c *Config) { c.MasterKey = mk })
	tn := mustTenant(t, s, "acme")
	x, _ := mustSandbox(t, s, tn.ID, SandboxInput{ExternalUserID: "e1"})
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeExternalUser, ExternalUserID: "e1", ResourceID: x.ID, ExposeAsEnv: "K", AllowedHosts: []string{"api.example.com"}}).Secret
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// As an older egressd left it: no index, no mark; and rows it wrote.
	var oldIDs []string
	updateClosed(t, path, func(tx storage.Tx) error {
		for _, name := range listIndexBuckets() {
			if err := clearBucket(tx.Bucket(name)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bMeta).Delete(metaListIndexes); err != nil {
			return err
		}
		for i := range 3 {
			row := storedSandbox{Sandbox: Sandbox{ID: newID(prefixComputer), TenantID: tn.ID, ResourceType: ResourceComputer, ExternalUserID: "e1", WorkspaceID: fmt.Sprint("w", i)}}
			if err := putJSON(tx.Bucket(bSandboxes), key(tn.ID, row.ID), &row); err != nil {
				return err
			}
			b := Binding{ID: newID(prefixBinding), TenantID: tn.ID, SecretID: sec.ID, ResourceID: row.ID, ResourceType: ResourceComputer}
			if err := putJSON(tx.Bucket(bBindings), key(tn.ID, b.ID), &b); err != nil {
				return err
			}
			if err := tx.Bucket(bBindByRes).Put(key(tn.ID, row.ID, b.ID), nil); err != nil {
				return err
			}
			if err := tx.Bucket(bBindBySecret).Put(key(tn.ID, sec.ID, b.ID), nil); err != nil {
				return err
			}
			oldIDs = append(oldIDs, row.ID, b.ID)
		}
		return nil
	})
	s = reopen(t, s, mk)
	var mark []byte
	s.view(func(tx storage.Tx) error {
		mark = bytes.Clone(tx.Bucket(bMeta).Get(metaListIndexes))
		return nil
	})
	if string(mark) != listIndexVersion {
		t.Fatalf("index version %q after Open", mark)
	}
	all := scanRows(t, s, tn.ID)
	for _, c := range []struct {
		got, want []string
	}{
		{ids(must(s.ListSandboxes(tn.ID, SandboxFilter{ExternalUserID: "e1"})), sandboxID), ids(all.sandboxes, sandboxID)},
		{ids(must(s.ListSandboxes(tn.ID, SandboxFilter{ResourceType: ResourceComputer, WorkspaceID: "w1"})), sandboxID), ids(all.sandboxesMatching(SandboxFilter{ResourceType: ResourceComputer, WorkspaceID: "w1"}), sandboxID)},
		{ids(must(s.ListBindings(tn.ID, BindingFilter{ResourceType: ResourceComputer})), bindingID), ids(all.bindingsMatching(BindingFilter{ResourceType: ResourceComputer}), bindingID)},
		{ids(must(s.ListBindings(tn.ID, BindingFilter{ExternalUserID: "e1"})), bindingID), ids(all.bindings, bindingID)},
		{ids(must(s.ListSecrets(tn.ID, SecretFilter{ResourceType: ResourceComputer})), secretID), []string{sec.ID}},
		{ids(must(s.ListSecrets(tn.ID, SecretFilter{ExternalUserID: "e1", Name: "k"})), secretID), []string{sec.ID}},
	} {
		if len(c.want) == 0 || !slices.Equal(c.got, c.want) {
			t.Errorf("after the rebuild: %v, want %v", c.got, c.want)
		}
	}
	if len(all.sandboxes) != 4 || len(all.bindings) != 4 {
		t.Fatalf("%d sandboxes, %d bindings", len(all.sandboxes), len(all.bindings))
	}
	checkIndexesExact(t, s)
	// Built once: the next Open finds the mark and writes nothing of them.
	before := indexSnapshot(t, s)
	s = reopen(t, s, mk)
	if after := indexSnapshot(t, s); !reflect.DeepEqual(before, after) {
		t.Error("indexes changed on the next Open")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
