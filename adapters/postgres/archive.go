package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ArchiveCheck configures CheckArchive.
type ArchiveCheck struct {
	// Dir is the archive deploy/backup's scripts write: Dir/wal holds the
	// archived WAL, Dir/base the base backups. Empty asks the server only.
	Dir string
	// MaxPendingAge is how long a completed WAL segment may wait for the
	// archiver before the archive is unhealthy (1 min when zero): it is
	// what a lost primary would take with it beyond archive_timeout.
	MaxPendingAge time.Duration
	// MaxBackupAge is the oldest the newest base backup may be (26 h when
	// zero: a daily backup, and some slack).
	MaxBackupAge time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Check statuses: a failed check makes the archive unhealthy.
const (
	CheckOK   = "ok"
	CheckWarn = "warn"
	CheckFail = "fail"
	CheckSkip = "skip"
)

// ArchiveCheckResult is one check's verdict and what it saw.
type ArchiveCheckResult struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// ArchiveReport is what CheckArchive found: the checks, and the figures
// they read (zero values where unknown).
type ArchiveReport struct {
	Healthy bool                 `json:"healthy"`
	Checks  []ArchiveCheckResult `json:"checks"`

	ArchiveMode    string        `json:"archive_mode"`
	ArchiveCommand string        `json:"archive_command"`
	ArchiveTimeout time.Duration `json:"archive_timeout_ns"`
	// LastArchivedWAL and LastArchivedAt are pg_stat_archiver's.
	LastArchivedWAL string    `json:"last_archived_wal"`
	LastArchivedAt  time.Time `json:"last_archived_at"`
	FailedCount     int64     `json:"failed_count"`
	LastFailedWAL   string    `json:"last_failed_wal"`
	LastFailedAt    time.Time `json:"last_failed_at"`
	// CurrentWAL is the segment the server writes now.
	CurrentWAL string `json:"current_wal"`
	// Pending counts completed segments waiting for the archiver (-1:
	// unknown), the oldest completed at OldestPendingAt.
	Pending         int       `json:"pending"`
	OldestPendingAt time.Time `json:"oldest_pending_at"`
	// Backups counts the complete base backups in Dir; the newest is
	// NewestBackup, started at NewestBackupAt.
	Backups        int       `json:"backups"`
	NewestBackup   string    `json:"newest_backup"`
	NewestBackupAt time.Time `json:"newest_backup_at"`
	// NewestArchivedWAL is the newest segment in Dir/wal, archived (copied
	// there) at NewestArchivedAt.
	NewestArchivedWAL string    `json:"newest_archived_wal"`
	NewestArchivedAt  time.Time `json:"newest_archived_at"`
	// Missing lists segments absent from Dir/wal between the newest base
	// backup's first segment and the last one archived.
	Missing []string `json:"missing,omitempty"`
}

// backupName is a complete base backup's directory under Dir/base (a
// partial one is hidden, .<stamp>.partial, until verified).
var backupName = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}(\.[0-9]{3})?Z$`)

// walName is a WAL segment's file name: timeline, then the segment
// number's high and low 32 bits, in hex.
var walName = regexp.MustCompile(`^[0-9A-F]{24}$`)

// CheckArchive asks the server at url (a role with pg_monitor, or a
// superuser) how its WAL archiving goes, and inspects the archive in
// o.Dir: archiving configured, the archiver not failing, no completed
// segment waiting longer than o.MaxPendingAge, a base backup newer than
// o.MaxBackupAge, and every segment from it on present. It returns an
// error only when the server cannot be asked; an unhealthy archive is a
// report with Healthy false.
func CheckArchive(ctx context.Context, url string, o ArchiveCheck) (ArchiveReport, error) {
	if o.MaxPendingAge <= 0 {
		o.MaxPendingAge = time.Minute
	}
	if o.MaxBackupAge <= 0 {
		o.MaxBackupAge = 26 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	now := o.Now()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return ArchiveReport{}, fmt.Errorf("backup check: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	r := ArchiveReport{Pending: -1}
	add := func(name, status, format string, args ...any) {
		r.Checks = append(r.Checks, ArchiveCheckResult{Name: name, Status: status, Detail: fmt.Sprintf(format, args...)})
	}
	var (
		timeoutS, segSize       int64
		recovering              bool
		lastAt, failedAt, reset *time.Time
		lastWAL, failedWAL      *string
	)
	err = conn.QueryRow(ctx, `select current_setting('archive_mode'), current_setting('archive_command'),
			(select setting::bigint from pg_settings where name = 'archive_timeout'),
			(select setting::bigint from pg_settings where name = 'wal_segment_size'),
			pg_is_in_recovery(),
			a.last_archived_wal, a.last_archived_time, a.failed_count, a.last_failed_wal, a.last_failed_time, a.stats_reset
		from pg_stat_archiver a`).Scan(&r.ArchiveMode, &r.ArchiveCommand, &timeoutS, &segSize, &recovering,
		&lastWAL, &lastAt, &r.FailedCount, &failedWAL, &failedAt, &reset)
	if err != nil {
		return r, fmt.Errorf("backup check: reading the archiver's settings and statistics (the role needs pg_monitor): %w", err)
	}
	r.ArchiveTimeout = time.Duration(timeoutS) * time.Second
	r.LastArchivedWAL, r.LastFailedWAL = deref(lastWAL), deref(failedWAL)
	r.LastArchivedAt, r.LastFailedAt = derefTime(lastAt), derefTime(failedAt)

	// Archiving on.
	switch {
	case r.ArchiveMode == "off":
		add("archiving", CheckFail, "archive_mode is off: no WAL is archived (deploy/backup/postgresql.conf)")
	case strings.TrimSpace(r.ArchiveCommand) == "" || r.ArchiveCommand == "(disabled)":
		add("archiving", CheckFail, "archive_command is empty: WAL piles up in pg_wal and nothing is archived")
	default:
		add("archiving", CheckOK, "archive_mode %s, archive_command %q", r.ArchiveMode, r.ArchiveCommand)
	}
	if r.ArchiveTimeout <= 0 {
		add("archive_timeout", CheckWarn, "archive_timeout is 0: a segment is archived only when full, so a lost primary may take any amount of committed writes with it")
	} else {
		add("archive_timeout", CheckOK, "a segment is archived at most %s after its first write: the RPO's bound", r.ArchiveTimeout)
	}

	// The archiver.
	switch {
	case recovering:
		add("archiver", CheckSkip, "the server is in recovery: the primary archives")
	case !r.LastFailedAt.IsZero() && (r.LastArchivedAt.IsZero() || r.LastFailedAt.After(r.LastArchivedAt)):
		add("archiver", CheckFail, "archive_command is failing: last failure %s ago on %s (%d failures since %s); its output is in the server's log",
			age(now, r.LastFailedAt), r.LastFailedWAL, r.FailedCount, fmtTime(derefTime(reset)))
	case r.LastArchivedAt.IsZero():
		add("archiver", CheckWarn, "nothing archived yet")
	case r.FailedCount > 0:
		add("archiver", CheckWarn, "archiving, but %d failures since %s (last on %s, %s ago); last archived %s, %s ago",
			r.FailedCount, fmtTime(derefTime(reset)), r.LastFailedWAL, age(now, r.LastFailedAt), r.LastArchivedWAL, age(now, r.LastArchivedAt))
	default:
		add("archiver", CheckOK, "last archived %s, %s ago, no failures", r.LastArchivedWAL, age(now, r.LastArchivedAt))
	}

	// Segments waiting: the archive_status directory holds a .ready file,
	// made when its segment was completed, for each one not yet archived.
	if !recovering {
		if err := conn.QueryRow(ctx, "select pg_walfile_name(pg_current_wal_lsn())").Scan(&r.CurrentWAL); err != nil {
			return r, fmt.Errorf("backup check: %w", err)
		}
		var oldest *time.Time
		err := conn.QueryRow(ctx, `select count(*), min(modification) from pg_ls_archive_statusdir() where name like '%.ready'`).
			Scan(&r.Pending, &oldest)
		switch {
		case err != nil:
			r.Pending = -1
			add("pending", CheckWarn, "cannot list pg_wal/archive_status (the role needs pg_monitor): %v", err)
		case r.Pending == 0:
			add("pending", CheckOK, "no completed segment waits for the archiver")
		case now.Sub(*oldest) > o.MaxPendingAge:
			r.OldestPendingAt = *oldest
			add("pending", CheckFail, "%d completed segments wait for the archiver, the oldest for %s (more than %s): a lost primary would take them with it",
				r.Pending, age(now, *oldest), o.MaxPendingAge)
		default:
			r.OldestPendingAt = *oldest
			add("pending", CheckOK, "%d completed segments wait for the archiver, the oldest for %s", r.Pending, age(now, *oldest))
		}
	}

	if o.Dir == "" {
		add("base backup", CheckSkip, "no archive directory given")
		add("continuity", CheckSkip, "no archive directory given")
	} else {
		r.inspectDir(o, now, segSize, add)
	}
	r.Healthy = true
	for _, c := range r.Checks {
		if c.Status == CheckFail {
			r.Healthy = false
		}
	}
	return r, nil
}

// inspectDir checks the archive's base backups and its WAL's continuity.
func (r *ArchiveReport) inspectDir(o ArchiveCheck, now time.Time, segSize int64, add func(name, status, format string, args ...any)) {
	entries, err := os.ReadDir(filepath.Join(o.Dir, "base"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		add("base backup", CheckFail, "cannot read %s: %v", filepath.Join(o.Dir, "base"), err)
	}
	var backups []string
	for _, e := range entries {
		if e.IsDir() && backupName.MatchString(e.Name()) {
			backups = append(backups, e.Name())
		}
	}
	sort.Strings(backups)
	r.Backups = len(backups)
	var firstSeg string
	if len(backups) == 0 {
		if err == nil || errors.Is(err, os.ErrNotExist) {
			add("base backup", CheckFail, "no base backup in %s: nothing to restore from (deploy/backup/base-backup.sh)", filepath.Join(o.Dir, "base"))
		}
	} else {
		r.NewestBackup = backups[len(backups)-1]
		label, err := readBackupLabel(filepath.Join(o.Dir, "base", r.NewestBackup, "backup_label"))
		switch {
		case err != nil:
			add("base backup", CheckFail, "the newest base backup, %s, has no readable backup_label: %v", r.NewestBackup, err)
		case now.Sub(label.start) > o.MaxBackupAge:
			r.NewestBackupAt, firstSeg = label.start, label.startWAL
			add("base backup", CheckFail, "the newest base backup, %s, is %s old (more than %s): a restore would replay that much WAL, and retention keeps WAL only from the oldest backup kept",
				r.NewestBackup, age(now, label.start), o.MaxBackupAge)
		default:
			r.NewestBackupAt, firstSeg = label.start, label.startWAL
			add("base backup", CheckOK, "%d base backups; the newest, %s, started %s ago", r.Backups, r.NewestBackup, age(now, label.start))
		}
	}

	segs, err := os.ReadDir(filepath.Join(o.Dir, "wal"))
	if err != nil {
		add("continuity", CheckFail, "cannot read %s: %v", filepath.Join(o.Dir, "wal"), err)
		return
	}
	have := map[uint64]bool{}
	names := map[string]bool{}
	var newest uint64
	for _, e := range segs {
		names[e.Name()] = true
		if !walName.MatchString(e.Name()) {
			continue
		}
		n, err := segmentNumber(e.Name(), segSize)
		if err != nil {
			continue
		}
		have[n] = true
		if n >= newest {
			newest = n
			r.NewestArchivedWAL = e.Name()
		}
	}
	if r.NewestArchivedWAL != "" {
		if fi, err := os.Stat(filepath.Join(o.Dir, "wal", r.NewestArchivedWAL)); err == nil {
			r.NewestArchivedAt = fi.ModTime()
		}
	}
	if r.LastArchivedWAL != "" && walName.MatchString(r.LastArchivedWAL) && !names[r.LastArchivedWAL] {
		add("continuity", CheckFail, "the server last archived %s, which is not in %s: it archives somewhere else",
			r.LastArchivedWAL, filepath.Join(o.Dir, "wal"))
		return
	}
	if firstSeg == "" {
		add("continuity", CheckSkip, "no base backup to count from")
		return
	}
	first, err := segmentNumber(firstSeg, segSize)
	if err != nil {
		add("continuity", CheckFail, "the newest base backup's first segment %q: %v", firstSeg, err)
		return
	}
	tli := firstSeg[:8]
	for n := first; n <= newest && len(r.Missing) < 100; n++ {
		if !have[n] {
			r.Missing = append(r.Missing, segmentName(tli, n, segSize))
		}
	}
	if len(r.Missing) > 0 {
		add("continuity", CheckFail, "%d segments missing after the newest base backup, first %s: a restore stops at the gap",
			len(r.Missing), r.Missing[0])
		return
	}
	add("continuity", CheckOK, "every segment from %s to %s is archived", firstSeg, r.NewestArchivedWAL)
}

type backupLabel struct {
	start    time.Time
	startWAL string
}

// readBackupLabel reads the start time and first segment of a base backup.
func readBackupLabel(path string) (backupLabel, error) {
	f, err := os.Open(path)
	if err != nil {
		return backupLabel{}, err
	}
	defer f.Close()
	var l backupLabel
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "START TIME: "); ok {
			t, err := time.Parse("2006-01-02 15:04:05 MST", v)
			if err != nil {
				return l, fmt.Errorf("START TIME %q: %w", v, err)
			}
			l.start = t
		}
		if _, v, ok := strings.Cut(line, "(file "); ok && strings.HasPrefix(line, "START WAL LOCATION: ") {
			l.startWAL = strings.TrimSuffix(v, ")")
		}
	}
	if err := sc.Err(); err != nil {
		return l, err
	}
	if l.start.IsZero() || !walName.MatchString(l.startWAL) {
		return l, errors.New("no START TIME or START WAL LOCATION")
	}
	return l, nil
}

// segmentNumber is the position of segment name in the WAL, whatever its
// timeline: segments of segSize bytes, 2^32 bytes of WAL per middle part.
func segmentNumber(name string, segSize int64) (uint64, error) {
	if segSize <= 0 || !walName.MatchString(name) {
		return 0, fmt.Errorf("%q is no WAL segment name", name)
	}
	hi, err := strconv.ParseUint(name[8:16], 16, 32)
	if err != nil {
		return 0, err
	}
	lo, err := strconv.ParseUint(name[16:24], 16, 32)
	if err != nil {
		return 0, err
	}
	return hi*(0x100000000/uint64(segSize)) + lo, nil
}

func segmentName(tli string, n uint64, segSize int64) string {
	per := 0x100000000 / uint64(segSize)
	return fmt.Sprintf("%s%08X%08X", tli, n/per, n%per)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

func age(now, t time.Time) time.Duration { return now.Sub(t).Round(time.Second) }

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "the start"
	}
	return t.UTC().Format(time.RFC3339)
}
