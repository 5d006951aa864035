package app

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/config"
)

// openAudit starts the audit stream cfg.Audit names, if any. The audit
// metrics are registered either way.
func (a *App) openAudit(cfg *config.Config, reg prometheus.Registerer) error {
	m := audit.NewMetrics(reg)
	if cfg.Audit.Path == "" {
		return nil
	}
	w, err := audit.Open(cfg.Audit.Path, cfg.Audit.BufferEvents, m)
	if err != nil {
		return fmt.Errorf("audit.path: %w", err)
	}
	a.auditW, a.audit = w, w
	return nil
}

// auditReload emits a config_reload event: err nil is success, otherwise
// reason says which step refused it (the error text is in the log only: it
// may quote config values).
func (a *App) auditReload(reason string, err error) {
	if a.audit == nil {
		return
	}
	ev := audit.Event{Type: audit.ConfigReload, Outcome: "success"}
	if err != nil {
		ev.Outcome, ev.Reason = "failure", reason
	}
	a.audit.Emit(ev)
}

// ReloadFailed reports a reload refused before Reload ran (the file could
// not be read or parsed) to the audit stream.
func (a *App) ReloadFailed(err error) {
	if err != nil {
		a.auditReload("invalid_config", err)
	}
}

// ReopenAudit reopens the audit file (audit.path), for log rotation: kseal
// calls it on SIGHUP, before reloading the config. Nothing to do without an
// audit file.
func (a *App) ReopenAudit() error {
	if a.auditW == nil {
		return nil
	}
	return a.auditW.Reopen()
}
