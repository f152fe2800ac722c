package proc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// record is what StateDir keeps of one spawned process, in proc-<pid>.json.
type record struct {
	PID int `json:"pid"`
	// Binary is the name the ProcSpawn gave (what the hive compares), Path the file it resolved to.
	Binary string    `json:"binary"`
	Path   string    `json:"path"`
	Args   []string  `json:"args"`
	Port   int       `json:"port"`
	Addr   node.Addr `json:"addr"`
	// Parent is the address that spawned it: it is told of the process's end.
	Parent  node.Addr `json:"parent"`
	Started time.Time `json:"started"`
	// StartTicks is field 22 of /proc/<pid>/stat (start time in clock ticks since boot): a
	// process with the same PID and another start time is another process.
	StartTicks uint64 `json:"start_ticks"`
	Log        string `json:"log,omitempty"`
}

const (
	recordPrefix = "proc-"
	recordSuffix = ".json"
	lockName     = "proctable.lock"
)

func recordPath(dir string, pid int) string {
	return filepath.Join(dir, recordPrefix+strconv.Itoa(pid)+recordSuffix)
}

// writeRecord writes r durably: a temporary file, synced, renamed over the record, and the
// folder synced.
func writeRecord(dir string, r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	final := recordPath(dir, r.PID)
	tmp, err := os.CreateTemp(dir, ".tmp-"+recordPrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// removeRecord removes the record of r's process, if the file still names that process (same
// start time): a record of a later process that reused the PID is left alone.
func removeRecord(dir string, r record) error {
	p := recordPath(dir, r.PID)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var cur record
	if json.Unmarshal(b, &cur) == nil && cur.StartTicks != r.StartTicks {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// readRecords reads every record of dir. A file that cannot be parsed is renamed to
// <name>.corrupt (kept for a person to look at) and reported in bad.
func readRecords(dir string) (recs []record, bad []string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasPrefix(name, recordPrefix) || !strings.HasSuffix(name, recordSuffix) {
			continue
		}
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil || r.PID <= 0 || r.StartTicks == 0 {
			why := "no PID or start time"
			if err != nil {
				why = err.Error()
			}
			kept := p + ".corrupt"
			if rerr := os.Rename(p, kept); rerr != nil {
				kept = p
			}
			bad = append(bad, fmt.Sprintf("%s (%s; kept as %s)", p, why, kept))
			continue
		}
		recs = append(recs, r)
	}
	return recs, bad, nil
}

// procStat is what the table reads of /proc/<pid>/stat.
type procStat struct {
	State      byte   // R, S, D, Z, T, X, ...
	PPID       int    // parent PID
	StartTicks uint64 // start time, clock ticks since boot
}

// errNoProc: /proc/<pid> does not exist: no such process.
var errNoProc = errors.New("no such process")

// readStat reads /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return procStat{}, errNoProc
	}
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

func parseStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed /proc stat line %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("malformed /proc stat line %q", s)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("malformed ppid in /proc stat line %q", s)
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("malformed start time in /proc stat line %q", s)
	}
	return procStat{State: f[0][0], PPID: ppid, StartTicks: st}, nil
}

// running reports whether the process a record names still runs: same PID, same start time,
// not a zombie. st is its stat when it exists with the recorded start time.
func running(r record) (st procStat, ok bool) {
	st, err := readStat(r.PID)
	if err != nil || st.StartTicks != r.StartTicks {
		return procStat{}, false
	}
	return st, st.State != 'Z' && st.State != 'X' && st.State != 'x'
}
