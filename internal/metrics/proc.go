package metrics

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Proc is what /proc tells of a worker process.
type Proc struct {
	CPU time.Duration // user and system time
	RSS uint64        // resident set, bytes
	PSS uint64        // proportional set (shared pages divided among their users), bytes
}

// clockTick is the unit of /proc/PID/stat's times: USER_HZ, which Linux
// fixes at 100 on every architecture it exports to user space.
const clockTick = 10 * time.Millisecond

// ReadProc reads pid's CPU time from /proc/PID/stat and its memory from
// /proc/PID/smaps_rollup.
func ReadProc(pid int) (Proc, error) {
	var p Proc
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return p, err
	}
	if p.CPU, err = parseStatCPU(stat); err != nil {
		return p, fmt.Errorf("%s/stat: %w", dir, err)
	}
	rollup, err := os.ReadFile(dir + "/smaps_rollup")
	if err != nil {
		return p, err
	}
	p.RSS, p.PSS = parseRollup(rollup)
	return p, nil
}

// parseStatCPU reads utime and stime, fields 14 and 15 of /proc/PID/stat.
// The command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so the fields are counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name")
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is f[11], stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields", len(f)+2)
	}
	u, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q, stime %q", f[11], f[12])
	}
	return time.Duration(u+s) * clockTick, nil
}

// parseRollup reads the Rss and Pss lines ("Rss:  1234 kB") of
// smaps_rollup, in bytes.
func parseRollup(b []byte) (rss, pss uint64) {
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseUint(string(f[1]), 10, 64)
		if err != nil {
			continue
		}
		switch string(f[0]) {
		case "Rss:":
			rss = v * 1024
		case "Pss:":
			pss = v * 1024
		}
	}
	return rss, pss
}
