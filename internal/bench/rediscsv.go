package bench

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// RBRow is one test line of `redis-benchmark --csv` output.
type RBRow struct {
	Test string  // "SET", "GET", ...
	RPS  float64 // requests per second
	// Latencies in milliseconds; zero when the redis-benchmark version does not print them
	// (before 7.0 it printed only test and rps).
	AvgMs, MinMs, P50Ms, P95Ms, P99Ms, MaxMs float64
}

// ParseRedisBenchmarkCSV parses `redis-benchmark --csv` output. Redis 7 prints a header line
// ("test","rps","avg_latency_ms",...) then one line per test; older versions print only
// "TEST","rps" lines without a header. Columns are matched by header name, so an added column
// in a later version does not shift the others.
func ParseRedisBenchmarkCSV(r io.Reader) ([]RBRow, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cols := map[string]int{"test": 0, "rps": 1}
	var rows []RBRow
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("redis-benchmark csv: %w", err)
		}
		// With --cluster, redis-benchmark first prints the masters it found ("Cluster has 3
		// master nodes:", "Master 0: <id> host:port") on stdout: free text, one CSV field.
		if len(rec) < 2 {
			continue
		}
		if rec[0] == "test" {
			cols = make(map[string]int, len(rec))
			for i, name := range rec {
				cols[strings.ToLower(strings.TrimSpace(name))] = i
			}
			continue
		}
		field := func(name string) (string, bool) {
			i, ok := cols[name]
			if !ok || i >= len(rec) {
				return "", false
			}
			return rec[i], true
		}
		num := func(name string) (float64, error) {
			s, ok := field(name)
			if !ok {
				return 0, nil
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil {
				return 0, fmt.Errorf("redis-benchmark csv: column %s of %q: %w", name, rec[0], err)
			}
			return v, nil
		}
		var row RBRow
		row.Test, _ = field("test")
		var errs []error
		for _, f := range []struct {
			name string
			dst  *float64
		}{{"rps", &row.RPS}, {"avg_latency_ms", &row.AvgMs}, {"min_latency_ms", &row.MinMs},
			{"p50_latency_ms", &row.P50Ms}, {"p95_latency_ms", &row.P95Ms}, {"p99_latency_ms", &row.P99Ms},
			{"max_latency_ms", &row.MaxMs}} {
			v, err := num(f.name)
			errs = append(errs, err)
			*f.dst = v
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, errors.New("redis-benchmark csv: no test lines")
	}
	return rows, nil
}
