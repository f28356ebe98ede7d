package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100

// cpuTimes is the CPU time used so far by the processes of interest: the broker, the
// database, the bench itself (receiver, publishers) and, when set, a worker or floor.
type cpuTimes map[string]time.Duration

// cpuSnapshot reads utime+stime of RabbitMQ (beam.smp), MariaDB (mariadbd or mysqld), this
// process, and the process pid (named name) if pid > 0.
func cpuSnapshot(name string, pid int) cpuTimes {
	out := cpuTimes{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, t, ok := procCPU(p)
		if !ok {
			continue
		}
		switch {
		case comm == "beam.smp":
			out["rabbitmq"] += t
		case comm == "mariadbd" || comm == "mysqld":
			out["mariadb"] += t
		}
		if p == os.Getpid() {
			out["bench"] += t
		}
		if pid > 0 && p == pid {
			out[name] += t
		}
	}
	return out
}

func procCPU(pid int) (string, time.Duration, bool) {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, false
	}
	s := string(raw)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", 0, false
	}
	comm := s[open+1 : closing]
	fields := strings.Fields(s[closing+1:])
	// After the command: state is field 3 of the line, utime 14 and stime 15.
	if len(fields) < 13 {
		return "", 0, false
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return comm, time.Duration(ut+st) * time.Second / clockTicks, true
}

// since is the CPU each process used from before to c, in core-seconds.
func (c cpuTimes) since(before cpuTimes) cpuTimes {
	out := cpuTimes{}
	for k, v := range c {
		out[k] = v - before[k]
	}
	return out
}

// format lists the processes' CPU time, each as a share of one core over span. A process
// that restarted meanwhile shows as "restarted".
func (c cpuTimes) format(span time.Duration) string {
	var parts []string
	for _, k := range []string{"webhookd", "floor", "bench", "rabbitmq", "mariadb"} {
		if v, ok := c[k]; ok && v < 0 {
			parts = append(parts, k+" restarted")
		} else if ok {
			parts = append(parts, fmt.Sprintf("%s %.1f s (%.0f%% of a core)", k, v.Seconds(), 100*v.Seconds()/span.Seconds()))
		}
	}
	return strings.Join(parts, ", ")
}

// total is the CPU of every process measured.
func (c cpuTimes) total() time.Duration {
	var t time.Duration
	for _, v := range c {
		t += v
	}
	return t
}
