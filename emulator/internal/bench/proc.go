package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports (the kernel ABI fixes it).
const clockTicks = 100

// statFields reads /proc/<pid>/stat and returns its fields after the
// command name: field 3 (state) is [0], so field n is [n-3]. The command
// name (field 2) is in parentheses and may hold spaces and parentheses;
// the fields after the last ')' are space separated.
func statFields(pid int) ([][]byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("bench: malformed /proc stat")
	}
	return bytes.Fields(b[i+1:]), nil
}

// CPUTime reads the user+system CPU time of pid from /proc/<pid>/stat
// (utime field 14, stime field 15).
func CPUTime(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, errors.New("bench: short /proc stat")
	}
	ut, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	st, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bench: malformed /proc stat times")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// procNice reads a process's nice value (field 19 of /proc/<pid>/stat).
func procNice(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 17 {
		return 0, errors.New("bench: short /proc stat")
	}
	return strconv.Atoi(string(f[16]))
}

// RaiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit and returns
// it. Children started afterwards (Mosquitto) inherit the raised limit:
// an explicit Setrlimit tells the Go runtime not to restore the original
// soft limit in children.
func RaiseFileLimit() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("bench: raise file limit: %w", err)
	}
	return r.Cur, nil
}

// Syscalls reads the read-like plus write-like system calls pid has made
// (syscr + syscw of /proc/<pid>/io; every read(2), including one that
// finds no data, counts). Per transaction it shows how well a client
// batches its socket traffic.
func Syscalls(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return 0, err
	}
	var n int64
	found := 0
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		k, v, ok := bytes.Cut(line, []byte(": "))
		if !ok || (string(k) != "syscr" && string(k) != "syscw") {
			continue
		}
		c, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0, errors.New("bench: malformed /proc io")
		}
		n += c
		found++
	}
	if found != 2 {
		return 0, errors.New("bench: /proc io lacks syscr or syscw")
	}
	return n, nil
}
