package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// The file's name sorts after cli.go, whose init makes the command table.
func init() {
	commands["backup"] = command{"backup check: the PostgreSQL archive's health (archiver, pending WAL, base backups, gaps)", runBackup}
}

// errUnhealthy is backup check's error when the archive fails a check: the
// command exits non-zero, for cron, a systemd timer or a CI job to notice.
var errUnhealthy = errors.New("backup check: the archive is unhealthy")

// runBackup is `fraise backup check`.
func runBackup(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(env.Stderr, "usage: fraise backup check [--archive DIR] [--json] [--textfile PATH]")
		return errors.New("backup: want check")
	}
	fs, cfgPath := flags("backup check", env)
	archive := fs.String("archive", "", "archive directory (wal/, base/); default backup.archive")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	textfile := fs.String("textfile", "", "also write the figures as Prometheus metrics to this file (node_exporter's textfile collector)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, _, err := loadConfig(*cfgPath, env)
	if err != nil {
		return err
	}
	if *archive == "" {
		*archive = cfg.Backup.Archive
	}
	ref := cfg.Backup.URL
	if ref == "" {
		ref = cfg.Database.AdminURL
	}
	url, err := config.Resolve(ref, env.Getenv)
	if err != nil {
		return fmt.Errorf("backup.url: %w", err)
	}
	r, err := postgres.CheckArchive(ctx, url, postgres.ArchiveCheck{Dir: *archive,
		MaxPendingAge: cfg.Backup.MaxPendingAge.Duration, MaxBackupAge: cfg.Backup.MaxBackupAge.Duration})
	if err != nil {
		return err
	}
	if *textfile != "" {
		if err := writeBackupMetrics(*textfile, r); err != nil {
			return fmt.Errorf("backup check: --textfile: %w", err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		verdict := "healthy"
		if !r.Healthy {
			verdict = "UNHEALTHY"
		}
		fmt.Fprintf(env.Stdout, "backup check: %s\n", verdict)
		for _, c := range r.Checks {
			fmt.Fprintf(env.Stdout, "  %-4s  %-15s  %s\n", c.Status, c.Name, c.Detail)
		}
	}
	if !r.Healthy {
		return errUnhealthy
	}
	return nil
}

// writeBackupMetrics writes r as Prometheus metrics for the textfile
// collector: the alerts on backups (docs/operations.md) read them.
func writeBackupMetrics(path string, r postgres.ArchiveReport) error {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, v float64) {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		g.Set(v)
		reg.MustRegister(g)
	}
	unix := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	healthy := 0.0
	if r.Healthy {
		healthy = 1
	}
	failing := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fraise_backup_check_failing", Help: "1 for each check of fraise backup check that failed, by check.",
	}, []string{"check"})
	for _, c := range r.Checks {
		v := 0.0
		if c.Status == postgres.CheckFail {
			v = 1
		}
		failing.WithLabelValues(c.Name).Set(v)
	}
	reg.MustRegister(failing)
	gauge("fraise_backup_healthy", "1 when every check of fraise backup check passed.", healthy)
	gauge("fraise_backup_last_archived_timestamp_seconds", "When the archiver last archived a WAL file (0: never).", unix(r.LastArchivedAt))
	gauge("fraise_backup_archive_failures", "archive_command failures since the archiver's statistics were reset.", float64(r.FailedCount))
	gauge("fraise_backup_pending_segments", "Completed WAL segments waiting for the archiver (-1: unknown).", float64(r.Pending))
	gauge("fraise_backup_oldest_pending_timestamp_seconds", "When the oldest segment waiting for the archiver was completed (0: none).", unix(r.OldestPendingAt))
	gauge("fraise_backup_newest_base_backup_timestamp_seconds", "When the newest base backup in the archive started (0: none).", unix(r.NewestBackupAt))
	gauge("fraise_backup_base_backups", "Complete base backups in the archive.", float64(r.Backups))
	gauge("fraise_backup_missing_segments", "WAL segments missing from the archive after the newest base backup.", float64(len(r.Missing)))
	return prometheus.WriteToTextfile(path, reg)
}
