package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fraise-dev/fraise/extauthz/policy"
)

// WatchPolicyDir reloads the policy from dir whenever its files change,
// until ctx ends. It polls every interval (a stat of each file, cheap)
// rather than relying on file-system events, which miss the symlink swaps
// Kubernetes uses to update a mounted ConfigMap. A change is loaded only
// once it has stayed the same for one more interval, so a policy being
// copied file by file is not tried half-written; a set that fails to
// compile or whose tests fail is logged and skipped, and the policy being
// served keeps serving, as ReloadPolicy guarantees.
func (s *Server) WatchPolicyDir(ctx context.Context, dir string, interval time.Duration) {
	// The first look always reloads: the directory may have changed since
	// New read it, and ReloadPolicy does nothing for the same revision.
	last, pending := "", ""
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp, err := fingerprint(dir)
		if err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "policy directory unreadable; keeping the current policy",
				slog.String("dir", dir), slog.String("err", err.Error()))
			continue
		}
		if fp == last {
			pending = ""
			continue
		}
		if fp != pending {
			pending = fp // changed: wait one interval for it to settle
			continue
		}
		last, pending = fp, ""
		if err := s.ReloadPolicy(ctx, os.DirFS(dir)); err != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "policy not loaded; the previous policy keeps serving",
				slog.String("dir", dir), slog.String("err", err.Error()), slog.String("policy_revision", s.PolicyRevision()))
		}
	}
}

// fingerprint names the names, sizes and modification times of the policy
// files under dir.
func fingerprint(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && strings.HasPrefix(d.Name(), ".") && d.Name() != ".." {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(p); ext != ".rego" && ext != ".json" {
			return nil
		}
		fi, err := os.Stat(p) // follows symlinks, as os.DirFS does
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", p, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// PollBundle fetches an OPA bundle from url every interval until ctx ends
// and loads it when it changed (the server's ETag, sent back as
// If-None-Match, saves the download otherwise). A bundle that fails to
// download, compile or pass its tests is logged and the policy being
// served keeps serving. It returns after the first attempt has finished
// when first is not nil, sending that attempt's error.
func (s *Server) PollBundle(ctx context.Context, client *http.Client, url string, interval time.Duration, first chan<- error) {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	etag := ""
	for {
		err := s.fetchBundle(ctx, client, url, &etag)
		if err != nil && ctx.Err() == nil {
			s.log.LogAttrs(ctx, slog.LevelError, "policy bundle not loaded; the previous policy keeps serving",
				slog.String("url", redact(url)), slog.String("err", err.Error()), slog.String("policy_revision", s.PolicyRevision()))
		}
		if first != nil {
			first <- err
			first = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (s *Server) fetchBundle(ctx context.Context, client *http.Client, url string, etag *string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if *etag != "" {
		req.Header.Set("If-None-Match", *etag)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil
	case http.StatusOK:
	default:
		return fmt.Errorf("GET %s: %s", redact(url), resp.Status)
	}
	fsys, rev, err := policy.ReadBundle(resp.Body)
	if err != nil {
		return err
	}
	if err := s.ReloadPolicy(ctx, fsys); err != nil {
		return fmt.Errorf("bundle revision %q: %w", rev, err)
	}
	*etag = resp.Header.Get("ETag")
	return nil
}

// redact drops credentials a bundle URL may carry.
func redact(raw string) string {
	if i := strings.Index(raw, "?"); i >= 0 {
		raw = raw[:i] + "?…"
	}
	if at := strings.Index(raw, "@"); at >= 0 {
		if sch := strings.Index(raw, "://"); sch >= 0 && sch < at {
			raw = raw[:sch+3] + "…" + raw[at:]
		}
	}
	return raw
}
