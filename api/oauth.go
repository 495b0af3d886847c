package api

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/egressd/egressd/oauth"
	"github.com/egressd/egressd/vault"
)

// MaxFlowWait caps ?wait= of GET /api/v1/egress/oauth/flows/{id}; it stays
// under the admin listener's write timeout.
const MaxFlowWait = 50 * time.Second

func (s *Server) oauthRoutes() []route {
	return append(s.connectRoutes(),
		route{"GET", "/api/v1/egress/oauth/providers", adminAccess, nil, s.needOAuth(s.oauthProviders)},
		route{"POST", "/api/v1/egress/oauth/connect", adminAccess, nil, s.needOAuth(s.oauthConnect)},
		route{"GET", "/api/v1/egress/oauth/flows/{id}", adminAccess, []string{"wait"}, s.needOAuth(s.oauthFlow)},
		route{"GET", "/api/v1/egress/oauth/callback", publicAccess, nil, s.needOAuth(s.oauthCallback)},
		route{"POST", "/api/v1/egress/oauth/complete", adminAccess, nil, s.needOAuth(s.oauthComplete)},
		route{"PUT", "/api/v1/egress/oauth/overrides/{provider}", adminAccess, nil, s.needOAuth(s.putOverride)},
		route{"GET", "/api/v1/egress/oauth/overrides/{provider}", adminAccess, nil, s.needOAuth(s.getOverride)},
		route{"DELETE", "/api/v1/egress/oauth/overrides/{provider}", adminAccess, nil, s.needOAuth(s.deleteOverride)},
	)
}

// needOAuth answers 501 when the server has no OAuth service.
func (s *Server) needOAuth(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		if s.oauth == nil {
			return errorf(ErrNotImplemented, "OAuth is not configured on this server (start egressd serve with --oauth-providers and --public-url)")
		}
		return h(w, r, p)
	}
}

// ProviderInfo is one provider in GET /api/v1/egress/oauth/providers:
// what the catalogue says, and which app is in force for this tenant.
type ProviderInfo struct {
	oauth.Provider
	// InForce is "override" (the tenant's white-label app), "operator"
	// (the operator's default app) or "none" (cannot connect).
	InForce  string               `json:"in_force"`
	Override *vault.OAuthOverride `json:"override,omitempty"`
}

// ProviderList is the answer of GET /api/v1/egress/oauth/providers.
type ProviderList struct {
	Providers []ProviderInfo `json:"providers"`
}

func (s *Server) oauthProviders(w http.ResponseWriter, _ *http.Request, p *principal) error {
	overrides, err := s.store.ListOAuthOverrides(p.tenant())
	if err != nil {
		return err
	}
	byName := map[string]*vault.OAuthOverride{}
	for i := range overrides {
		byName[overrides[i].Provider] = &overrides[i]
	}
	out := ProviderList{Providers: []ProviderInfo{}}
	for _, pr := range s.oauth.Catalogue().List() {
		info := ProviderInfo{Provider: pr, InForce: "none", Override: byName[pr.Name]}
		switch {
		case info.Override != nil:
			info.InForce = "override"
		case pr.ClientID() != "":
			info.InForce = "operator"
		}
		out.Providers = append(out.Providers, info)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ConnectAnswer is the answer of POST /api/v1/egress/oauth/connect.
// AuthorizeURL is where to send the end-user's browser: for a flow on
// egressd's own callback its connect link (<public URL>/connect/{id}),
// the Connect page, whose button binds the flow to the first browser that
// presses it; for a flow on
// the tenant's own callback the provider's authorize URL (the tenant
// binds its session and asserts the end-user on /oauth/complete).
type ConnectAnswer struct {
	ID           string    `json:"id"`
	AuthorizeURL string    `json:"authorize_url"`
	State        string    `json:"state"`
	Status       string    `json:"status"`
	Provider     string    `json:"provider"`
	ExpiresAt    time.Time `json:"expires_at"`
}

func (s *Server) oauthConnect(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in oauth.StartInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Provider == "" {
		return errorf(ErrBadRequest, "provider: required")
	}
	st, err := s.oauth.Start(r.Context(), vault.ActorOf(p.key), p.tenant(), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/egress/oauth/flows/"+st.Flow.ID)
	writeJSON(w, http.StatusCreated, ConnectAnswer{ID: st.Flow.ID, AuthorizeURL: st.AuthorizeURL, State: st.State,
		Status: st.Flow.Status, Provider: st.Flow.Provider, ExpiresAt: st.Flow.ExpiresAt})
	return nil
}

func (s *Server) oauthFlow(w http.ResponseWriter, r *http.Request, p *principal) error {
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			n, nerr := strconv.Atoi(v)
			if nerr != nil {
				return errorf(ErrBadRequest, "wait: want a duration such as 30s")
			}
			d = time.Duration(n) * time.Second
		}
		if d < 0 {
			return errorf(ErrBadRequest, "wait: must not be negative")
		}
		wait = min(d, MaxFlowWait)
	}
	f, err := s.oauth.Wait(r.Context(), p.tenant(), r.PathValue("id"), wait)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

// CompleteInput is the body of POST /api/v1/egress/oauth/complete: what
// the provider's redirect to the tenant's own callback carried.
// ExternalUserID (OwnerUserID for a user-scoped flow without one) is the
// end-user of the tenant's session the callback arrived in: it must be
// the flow's, else 403 and the flow stays pending.
type CompleteInput struct {
	Code             string `json:"code"`
	State            string `json:"state"`
	ExternalUserID   string `json:"external_user_id"`
	OwnerUserID      string `json:"owner_user_id"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (s *Server) oauthComplete(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in CompleteInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	var pe *oauth.ProviderError
	if in.Error != "" {
		pe = &oauth.ProviderError{Code: in.Error, Description: in.ErrorDescription}
	}
	by := oauth.By{TenantID: p.tenant(), ExternalUserID: in.ExternalUserID, OwnerUserID: in.OwnerUserID}
	f, err := s.oauth.Complete(r.Context(), by, in.Code, in.State, pe)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

// CallbackAnswer is the JSON answer of the callback (Accept: application/json).
type CallbackAnswer struct {
	Status  string `json:"status"`
	FlowID  string `json:"flow_id,omitempty"`
	Message string `json:"message"`
}

// maxConnectCookies caps the connect cookies a callback looks at.
const maxConnectCookies = 32

// oauthCallback is where the provider sends the browser back. The state
// and the connect cookie of the browser that pressed the button of the
// flow's Connect page authenticate it (without that cookie the state is
// not claimed); it answers the flow's branded page (or JSON) saying how
// it went.
func (s *Server) oauthCallback(w http.ResponseWriter, r *http.Request, _ *principal) error {
	q := r.URL.Query()
	var pe *oauth.ProviderError
	if e := q.Get("error"); e != "" {
		pe = &oauth.ProviderError{Code: e, Description: q.Get("error_description")}
	}
	cookies := map[string]string{}
	for _, c := range r.Cookies() {
		if id, ok := strings.CutPrefix(c.Name, oauth.CookiePrefix); ok && id != "" && len(cookies) < maxConnectCookies {
			cookies[id] = c.Value
		}
	}
	f, err := s.oauth.Complete(r.Context(), oauth.By{Cookies: cookies}, q.Get("code"), q.Get("state"), pe)
	if _, ok := cookies[f.ID]; ok && f.ID != "" && !errors.Is(err, vault.ErrWrongBrowser) {
		http.SetCookie(w, &http.Cookie{Name: oauth.CookiePrefix + f.ID, Value: "", Path: s.publicPath(oauth.CallbackPath), MaxAge: -1,
			HttpOnly: true, Secure: r.TLS != nil || strings.HasPrefix(f.RedirectURI, "https://"), SameSite: http.SameSiteLaxMode})
	}
	ans := CallbackAnswer{Status: f.Status, FlowID: f.ID, Message: "Connected. You can close this window."}
	status := http.StatusOK
	if err != nil {
		var code string
		status, code = classify(err)
		ans.Message = "The connection failed: " + message(err, status)
		if ans.Status == "" || ans.Status == vault.FlowPending {
			ans.Status = "failed"
		}
		if rec, ok := w.(*recorder); ok {
			rec.errCode = code
		}
	}
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		writeJSON(w, status, ans)
		return nil
	}
	return s.callbackPage(w, f, err, pe, status)
}

// OverrideInput is the body of PUT /api/v1/egress/oauth/overrides/{provider}.
type OverrideInput = vault.OAuthOverrideInput

func (s *Server) provider(r *http.Request) (string, error) {
	name := r.PathValue("provider")
	if _, err := s.oauth.Catalogue().Get(name); err != nil {
		return "", err
	}
	return name, nil
}

func (s *Server) putOverride(w http.ResponseWriter, r *http.Request, p *principal) error {
	name, err := s.provider(r)
	if err != nil {
		return err
	}
	var in OverrideInput
	if err := decode(w, r, &in); err != nil {
		return redact(err, in.ClientSecret)
	}
	if in.CallbackURL != "" && !absoluteHTTP(in.CallbackURL) {
		return errorf(ErrBadRequest, "callback_url: want an absolute http(s) URL")
	}
	o, err := s.writer(p).PutOAuthOverride(p.tenant(), name, in)
	if err != nil {
		return redact(err, in.ClientSecret)
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

func (s *Server) getOverride(w http.ResponseWriter, r *http.Request, p *principal) error {
	name, err := s.provider(r)
	if err != nil {
		return err
	}
	o, err := s.store.OAuthOverride(p.tenant(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

func (s *Server) deleteOverride(w http.ResponseWriter, r *http.Request, p *principal) error {
	name, err := s.provider(r)
	if err != nil {
		return err
	}
	if err := s.writer(p).DeleteOAuthOverride(p.tenant(), name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func absoluteHTTP(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Fragment == ""
}
