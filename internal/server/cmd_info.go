package server

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Version is the Shoal version reported by INFO.
const Version = "0.1.0"

// infoSection is one INFO section: its name as requested (lowercase) and its header title.
type infoSection struct {
	name, title string
	// inDefault marks sections shown by plain INFO; all sections are shown by INFO all.
	inDefault bool
}

// infoSections lists the sections in output order. replication, raft, migration, keyspace and
// memory come from the Backend; the others the server produces itself.
var infoSections = []infoSection{
	{"server", "Server", true},
	{"clients", "Clients", true},
	{"memory", "Memory", true},
	{"replication", "Replication", true},
	{"raft", "Raft", true},
	{"cluster", "Cluster", true},
	{"migration", "Migration", true},
	{"keyspace", "Keyspace", true},
}

// cmdInfo answers INFO [section ...] as a bulk string of "# Title" headers and "key:value"
// lines separated by CRLF, sections separated by an empty line, as Redis formats it. Unknown
// section names produce nothing, as in Redis.
func cmdInfo(c *conn, args [][]byte) {
	want := make(map[string]bool)
	everything := false
	if len(args) == 1 {
		for _, sec := range infoSections {
			want[sec.name] = sec.inDefault
		}
	}
	for _, a := range args[1:] {
		name := strings.ToLower(string(a))
		switch name {
		case "all", "everything":
			everything = true
		case "default":
			for _, sec := range infoSections {
				if sec.inDefault {
					want[sec.name] = true
				}
			}
		default:
			want[name] = true
		}
	}
	var b strings.Builder
	for _, sec := range infoSections {
		if !everything && !want[sec.name] {
			continue
		}
		body := c.infoBody(sec.name)
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + sec.title + "\r\n")
		b.WriteString(body)
	}
	c.w.BulkString(b.String())
}

// infoBody returns the lines of one section, each ending in CRLF.
func (c *conn) infoBody(section string) string {
	s := c.s
	var b strings.Builder
	kv := func(k, v string) { b.WriteString(k + ":" + v + "\r\n") }
	switch section {
	case "server":
		up := time.Since(s.started)
		port := "0"
		if a := s.Addr(); a != nil {
			if _, p, err := splitHostPort(a.String()); err == nil {
				port = p
			}
		}
		kv("redis_version", redisVersion)
		kv("shoal_version", Version)
		kv("redis_mode", "cluster")
		kv("os", runtime.GOOS+" "+runtime.GOARCH)
		kv("arch_bits", strconv.Itoa(strconv.IntSize))
		kv("go_version", runtime.Version())
		kv("process_id", strconv.Itoa(os.Getpid()))
		kv("run_id", s.nodeID())
		kv("tcp_port", port)
		kv("uptime_in_seconds", strconv.FormatInt(int64(up/time.Second), 10))
		kv("uptime_in_days", strconv.FormatInt(int64(up/(24*time.Hour)), 10))
	case "clients":
		kv("connected_clients", strconv.Itoa(s.numClients()))
		kv("maxclients", strconv.Itoa(s.maxConns))
		kv("blocked_clients", "0")
	case "memory":
		if s.cfg.UsedMemory != nil {
			kv("used_memory", strconv.FormatInt(s.cfg.UsedMemory(), 10))
		}
		kv("maxmemory", strconv.FormatInt(max(s.cfg.MaxMemory, 0), 10))
		kv("maxmemory_policy", "noeviction")
		b.WriteString(crlfLines(s.backend.Info(section)))
	case "cluster":
		kv("cluster_enabled", "1")
		b.WriteString(crlfLines(s.backend.Info(section)))
	case "keyspace":
		body := s.backend.Info(section)
		if body == "" {
			// The backend keeps no keyspace section: derive Redis's line from DBSIZE. Redis
			// prints nothing for an empty database.
			if n, err := s.backend.DBSize(c.reqCtx()); err == nil && n > 0 {
				kv("db0", "keys="+strconv.FormatInt(n, 10)+",expires=0,avg_ttl=0")
			}
			return b.String()
		}
		return crlfLines(body)
	default:
		return crlfLines(s.backend.Info(section))
	}
	return b.String()
}

// crlfLines normalises backend text to CRLF-terminated lines, dropping empty ones, so a
// backend may use plain "\n".
func crlfLines(s string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		b.WriteString(line + "\r\n")
	}
	return b.String()
}
