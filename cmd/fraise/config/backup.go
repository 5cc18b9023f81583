package config

import "time"

// Backup configures `fraise backup check`, which reports on the PostgreSQL
// archive deploy/backup's scripts keep (docs/operations.md, Backup).
type Backup struct {
	// Archive is the archive directory: wal/ (archive-wal.sh) and base/
	// (base-backup.sh). Empty checks the server's archiver only.
	Archive string `toml:"archive"`
	// URL is how the check connects: a role with pg_monitor (it reads
	// archive_command and lists pg_wal/archive_status). Empty uses
	// database.admin_url. May be a secret reference.
	URL string `toml:"url"`
	// MaxPendingAge is how long a completed WAL segment may wait for the
	// archiver before the archive is unhealthy.
	MaxPendingAge Duration `toml:"max_pending_age"`
	// MaxBackupAge is the oldest the newest base backup may be.
	MaxBackupAge Duration `toml:"max_backup_age"`
}

func defaultBackup() Backup {
	return Backup{MaxPendingAge: Duration{time.Minute}, MaxBackupAge: Duration{26 * time.Hour}}
}

func (b Backup) validate(bad func(key, format string, args ...any)) {
	if b.MaxPendingAge.Duration <= 0 {
		bad("backup.max_pending_age", "must be positive")
	}
	if b.MaxBackupAge.Duration <= 0 {
		bad("backup.max_backup_age", "must be positive")
	}
}
