package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/egressd/egressd/vault"
)

// health answers the unauthenticated probes of the admin listener.
type health struct {
	store *vault.Store
	ready atomic.Bool
}

// healthz says the process serves HTTP.
func (h *health) healthz(w http.ResponseWriter, _ *http.Request) {
	writeStatus(w, http.StatusOK, "ok", "")
}

// readyz says egressd can answer: it is not shutting down and the vault
// can be read.
func (h *health) readyz(w http.ResponseWriter, _ *http.Request) {
	if !h.ready.Load() {
		writeStatus(w, http.StatusServiceUnavailable, "unavailable", "not serving (starting or shutting down)")
		return
	}
	err := h.store.Read(func(r *vault.Reader) error {
		_, err := r.Tenant("")
		if errors.Is(err, vault.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		writeStatus(w, http.StatusServiceUnavailable, "unavailable", "vault cannot be read: "+err.Error())
		return
	}
	writeStatus(w, http.StatusOK, "ready", "")
}

func writeStatus(w http.ResponseWriter, code int, status, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	body := map[string]string{"status": status}
	if reason != "" {
		body["reason"] = reason
	}
	_ = json.NewEncoder(w).Encode(body)
}
