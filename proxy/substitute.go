package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"

	"golang.org/x/net/http/httpguts"

	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// subst decides every placeholder of one request: it looks the placeholder
// up, resolves it for this sandbox, checks host, location and TLS, and
// records what it did. It is called from the request goroutine and, for
// streamed bodies, from the transport's body writer: guard with mu.
type subst struct {
	p    *Proxy
	st   *reqState
	ctx  context.Context
	sbx  *vault.Sandbox
	host string
	tls  bool

	mu        sync.Mutex
	committed bool // the pre-forward audit record is stored
	// recorded: the request's final row is written (finalize); a body
	// still streaming may substitute nothing more, since no row would
	// say so.
	recorded bool
	deny     Reason
	uses     []Use
	dropped  int    // uses beyond maxUses, counted only
	echoes   []echo // forms of the values sent, for response redaction
	// bodyLive is set while a streamed body may still substitute values
	// after the response has begun.
	bodyLive bool
	// foreign are the cores issued to other sandboxes that this request
	// looked up in the store again (placeholder).
	foreign []string
}

// maxUses bounds the uses recorded for one request; the rest are counted.
const maxUses = 100

// echo pairs a form of a value that went out with the placeholder form it
// replaced, as bytes (bodies) and as strings (headers).
type echo struct {
	value, placeholder []byte
	valueS, placeS     string
}

func newEcho(value, placeholder []byte) echo {
	return echo{value: value, placeholder: placeholder, valueS: string(value), placeS: string(placeholder)}
}

// record keeps a use (with mu held), up to maxUses.
func (s *subst) record(u Use) {
	if len(s.uses) >= maxUses {
		s.dropped++
		return
	}
	s.uses = append(s.uses, u)
}

// addEcho remembers a form of a value that went out (with mu held), once.
func (s *subst) addEcho(value, placeholder []byte) {
	if len(value) < 4 || bytes.Equal(value, placeholder) {
		return // too short to mask without mangling ordinary text
	}
	for _, e := range s.echoes {
		if bytes.Equal(e.value, value) {
			return
		}
	}
	// One copy of both as bytes and one as a string, each form a slice of
	// it.
	b := make([]byte, 0, len(value)+len(placeholder))
	b = append(append(b, value...), placeholder...)
	str := string(b)
	n := len(value)
	s.echoes = append(s.echoes, echo{value: b[:n:n], placeholder: b[n:], valueS: str[:n], placeS: str[n:]})
}

// echoForms records the raw value and the forms it is sent or echoed in:
// URL-escaped, and JSON-escaped (also with the "\/" that some encoders write).
func (s *subst) echoForms(value []byte, placeholder string) {
	ph := []byte(placeholder)
	s.addEcho(value, ph)
	if plainToken(value) {
		return // every other form is the value itself
	}
	s.addEcho([]byte(url.QueryEscape(string(value))), ph)
	s.addEcho([]byte(url.PathEscape(string(value))), ph)
	if j, err := json.Marshal(string(value)); err == nil {
		js := j[1 : len(j)-1]
		s.addEcho(js, ph)
		s.addEcho(bytes.ReplaceAll(js, []byte("/"), []byte(`\/`)), ph)
	}
}

// plainToken: b holds only bytes that URL and JSON escaping leave as they
// are (letters, digits, - . _ ~), as most API keys do.
func plainToken(b []byte) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// snapshot returns the echoes so far and whether more may come.
func (s *subst) snapshot() ([]echo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.echoes[:len(s.echoes):len(s.echoes)], s.bodyLive
}

// fn returns the SubstFunc for one location. With observe set it only
// records (the body is passing through untouched).
func (s *subst) fn(loc vault.Location, observe bool) SubstFunc {
	return func(core, lookback []byte) (int, []byte, bool) {
		n, v, ok := s.decide(loc, core, lookback, observe)
		return n, v, ok && !observe
	}
}

func (s *subst) decide(loc vault.Location, core, lookback []byte, observe bool) (int, []byte, bool) {
	ph, err := s.p.placeholder(string(core))
	if err == nil && ph.SandboxID != s.sbx.ID && s.firstForeign(string(core)) {
		ph, err = s.p.placeholderAgain(string(core))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recorded {
		// The upstream answered and the request is on record while its
		// body still streams: the rest goes as it is (fail closed).
		return 0, nil, false
	}
	use := Use{Location: loc, Action: ActionLeft}
	switch {
	case errors.Is(err, vault.ErrNotFound):
		use.Reason = "unknown_placeholder"
		s.record(use)
		return 0, nil, false
	case err != nil: // the store failed: as a failed Resolve
		use.Reason = ReasonResolveError.String()
		if loc != vault.InBody && !observe {
			use.Action = ActionDenied
			s.refuse(ReasonResolveError)
		}
		s.record(use)
		return 0, nil, false
	}
	use.Name = ph.Name
	if ph.SandboxID != s.sbx.ID {
		use.Reason, use.Leak = "foreign_placeholder", true
		if ph.TenantID == s.sbx.TenantID {
			use.LeakSandboxID = ph.SandboxID
		} else {
			use.Name = ""
		}
		s.p.metrics.leaks.Inc()
		s.record(use)
		return 0, nil, false
	}
	prefix := ph.Text[:len(ph.Text)-coreLen]
	if !bytes.HasSuffix(lookback, []byte(prefix)) {
		use.Reason = "prefix_missing"
		s.record(use)
		return 0, nil, false
	}
	res, err := s.p.cfg.Resolver.Resolve(s.ctx, s.sbx.ID, ph.Name)
	if err != nil {
		use.Reason = "unresolved"
		if !errors.Is(err, resolver.ErrNoSecret) {
			use.Reason = ReasonResolveError.String()
			if loc != vault.InBody && !observe {
				use.Action = ActionDenied
				s.refuse(ReasonResolveError)
			}
		}
		s.record(use)
		return 0, nil, false
	}
	use.SecretID, use.Version, use.Level = res.Secret.ID, res.Secret.Version, res.Level.String()
	reason := ReasonNone
	switch {
	case !s.tls:
		reason = ReasonPlainHTTP
	case !vault.HostAllowed(res.Secret.AllowedHosts, s.host):
		reason = ReasonHostNotAllowed
	case !slices.Contains(res.Secret.SubstituteIn, loc) || observe:
		reason = ReasonLocationNotAllowed
	}
	if reason == ReasonNone && s.needsRefresh(res) {
		if res, reason = s.refresh(res); reason == ReasonNone {
			use.Version = res.Secret.Version
		}
	}
	var value []byte
	if reason == ReasonNone {
		value = res.Value.Reveal()
		if loc == vault.InHeader && !httpguts.ValidHeaderFieldValue(string(value)) {
			reason = ReasonInvalidValue
		}
	}
	if reason != ReasonNone {
		use.Reason = reason.String()
		if loc != vault.InBody {
			use.Action = ActionDenied
			s.refuse(reason)
		}
		s.record(use)
		return 0, nil, false
	}
	use.Action = ActionSubstituted
	if err := s.commit(use); err != nil {
		// No record, no value: the placeholder stays (fail closed).
		use.Action, use.Reason = ActionLeft, ReasonAuditUnavailable.String()
		if loc != vault.InBody {
			use.Action = ActionDenied
			s.refuse(ReasonAuditUnavailable)
		}
		s.record(use)
		return 0, nil, false
	}
	switch loc {
	case vault.InQuery:
		value = []byte(url.QueryEscape(string(value)))
	case vault.InPath:
		value = []byte(url.PathEscape(string(value)))
	}
	s.record(use)
	s.echoForms(res.Value.Reveal(), ph.Text)
	return len(prefix), value, true
}

// needsRefresh reports whether res is an OAuth token that expires within
// RefreshWindow and a Refresher is configured.
func (s *subst) needsRefresh(res *resolver.Result) bool {
	sec := &res.Secret
	return s.p.cfg.Refresher != nil && sec.Type == "oauth_token" && sec.ExpiresAt != nil &&
		sec.ExpiresAt.Before(s.p.cfg.Now().Add(RefreshWindow))
}

// refresh renews an expiring OAuth token before it is sent (one refresh
// per secret at a time, shared by concurrent requests). A failure refuses
// the placeholder: an expired token is never sent, and the upstream's 401
// is never retried.
func (s *subst) refresh(res *resolver.Result) (*resolver.Result, Reason) {
	sec, v, err := s.p.cfg.Refresher.Refresh(s.ctx, res.Secret)
	if err != nil {
		s.p.log.Warn("oauth refresh failed; placeholder refused", "sandbox", s.sbx.ID, "secret", res.Secret.ID, "err", err.Error())
		return res, ReasonOAuthRefreshFailed
	}
	out := *res
	out.Value, out.Secret = v, sec
	return &out, ReasonNone
}

// commit stores the request's record before its first value leaves, once
// per request (sync audit mode). Called with mu held.
func (s *subst) commit(next Use) error {
	if s.committed || s.p.cfg.Sink == nil || s.p.cfg.AuditAsync {
		return nil
	}
	ev := s.p.event(s.st)
	ev.Outcome = OutcomeSubstituted
	ev.Uses = append(append(ev.Uses, s.uses...), next)
	if err := s.p.cfg.Sink.Record(s.ctx, ev); err != nil {
		s.p.log.Error("audit record failed; refusing to send a value", "sandbox", s.sbx.ID, "err", err.Error())
		return err
	}
	s.committed = true
	return nil
}

// refuse keeps the first reason a header or URL placeholder was refused.
func (s *subst) refuse(r Reason) {
	if s.deny == ReasonNone {
		s.deny = r
	}
}

func (s *subst) denied() Reason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deny
}

// firstForeign reports whether core, issued to another sandbox, is seen
// for the first time in this request.
func (s *subst) firstForeign(core string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.foreign, core) {
		return false
	}
	s.foreign = append(s.foreign, core)
	return true
}

// placeholder finds who a placeholder core was issued to. An issued
// placeholder never changes while its sandbox lives, so hits are cached
// with no invalidation, on every replica. Only a delete (of the sandbox,
// on any replica) can make a hit stale, and then harmlessly for the
// sandbox it was issued to: that sandbox's requests are refused (MayUse
// and Resolve answer ErrUnknownSandbox, never from a stale cache). For
// another sandbox, decide asks the store again, once per request
// (placeholderAgain), so a deleted sandbox's placeholder is recorded as
// unknown, as a replica that never cached it records it, not as a leak.
//
// The error is nil, wraps vault.ErrNotFound for a core never issued (or
// deleted), or is the store's failure.
func (p *Proxy) placeholder(core string) (vault.Placeholder, error) {
	if ph, ok := p.phs.Get(core); ok {
		return ph, nil
	}
	if p.phMiss.Contains(core) {
		return vault.Placeholder{}, errUnknownPlaceholder
	}
	return p.lookupPlaceholder(core)
}

// errUnknownPlaceholder is a remembered miss.
var errUnknownPlaceholder = fmt.Errorf("placeholder: %w", vault.ErrNotFound)

// placeholderAgain looks a cached core up in the store again.
func (p *Proxy) placeholderAgain(core string) (vault.Placeholder, error) {
	ph, err := p.lookupPlaceholder(core)
	if errors.Is(err, vault.ErrNotFound) {
		p.phs.Remove(core)
	}
	return ph, err
}

func (p *Proxy) lookupPlaceholder(core string) (vault.Placeholder, error) {
	ph, err := p.cfg.Store.LookupPlaceholder(core)
	switch {
	case errors.Is(err, vault.ErrNotFound):
		// Cores are random and issued by a committed write before any
		// sandbox can send them: one unknown now (never issued, or its
		// sandbox deleted) is not issued later, so a miss can be
		// remembered and a flood of made-up ones costs no reads.
		p.phMiss.Add(core, struct{}{})
	case err != nil:
		// The store failed (a shared one may be unreachable for a
		// moment): not remembered, or a real placeholder would stay
		// unknown once the store is back.
		p.log.Warn("placeholder lookup failed", "err", err.Error())
	default:
		p.phs.Add(core, ph)
	}
	return ph, err
}
