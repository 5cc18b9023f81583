package bench_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The machine these benchmarks run on is shared, so requests per second
// measure the share of CPU a server got as much as the server. CPU time
// spent per request does not depend on that share: it is what a CPU-bound
// machine divides its cores by. cpuSample reads it from /proc (Linux); on
// other systems the CPU metrics are absent.

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, 100
// on every Linux architecture Go supports.
const userHZ = 100

// procCPU returns the user plus system CPU time of process pid.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; fields after it are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / userHZ, true
}

// backendCPU returns the CPU time of every PostgreSQL backend serving
// database db, by pid: backends name their database in their title
// ("postgres: fraise_app <db> 127.0.0.1(...)"), and the harness gives every
// test database a unique name, so other servers on the machine are not
// counted.
func backendCPU(db string) map[int]time.Duration {
	out := map[int]time.Duration{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	needle := []byte(" " + db + " ")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(cmd, []byte("postgres: ")) || !bytes.Contains(cmd, needle) {
			continue
		}
		if d, ok := procCPU(pid); ok {
			out[pid] = d
		}
	}
	return out
}

// cpuMeter measures the CPU the processes serving a path (a server, or
// `fraise dev`, Envoy and Redis) and the database's backends spend between
// start and stop.
type cpuMeter struct {
	pids     []int
	db       string
	start    []time.Duration
	backends map[int]time.Duration
	ok       bool
}

func startCPU(db string, pids ...int) *cpuMeter {
	m := &cpuMeter{pids: pids, db: db, start: make([]time.Duration, len(pids)), ok: true}
	for i, pid := range pids {
		var ok bool
		m.start[i], ok = procCPU(pid)
		m.ok = m.ok && ok
	}
	m.backends = backendCPU(db)
	return m
}

// stop returns each process's CPU time since start, in the order of the
// pids, and the backends'; ok is false when /proc cannot tell for one.
func (m *cpuMeter) stop() (procs []time.Duration, pg time.Duration, ok bool) {
	procs = make([]time.Duration, len(m.pids))
	for i, pid := range m.pids {
		d, ok := procCPU(pid)
		if !ok || !m.ok {
			return nil, 0, false
		}
		procs[i] = d - m.start[i]
	}
	for pid, d := range backendCPU(m.db) {
		pg += d - m.backends[pid] // a backend started since counts from zero
	}
	return procs, pg, true
}
