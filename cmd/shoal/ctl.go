package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/shoal-kv/shoal/internal/harness"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/tlsconf"
)

const ctlUsage = `usage: shoal ctl --addr host:port[,host:port...] <command> [args]

commands:
  join GID ID=ADDR[,ID=ADDR...]   add a replica group (or replace its node list)
  leave GID                       remove a group; its shards go to the others
  move LO HI GID                  give the slots [LO,HI) to a group
  split LO HI AT                  cut the shard [LO,HI) at slot AT
  merge LO1 HI1 LO2 HI2           join two adjacent shards of one group
  rebalance                       spread load now (split hot shards, move shards)
  auto on|off                     automatic load rebalancing on the controller leader
  report JSON                     send a load report (as groups do)
  query [NUM]                     show configuration NUM (default: the latest)
  status                          show the latest configuration with shard loads
`

// runCtl is the controller's command-line client.
func runCtl(ctx context.Context, args []string) error {
	return ctl(ctx, args, os.Stdout)
}

func ctl(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), ctlUsage); fs.PrintDefaults() }
	addr := fs.String("addr", "127.0.0.1:7400", "controller replicas' client addresses, comma-separated")
	timeout := fs.Duration("timeout", 15*time.Second, "give up after this long (retries included)")
	asJSON := fs.Bool("json", false, "print query and status replies as JSON")
	wait := fs.Bool("wait", true, "after a change, show the hand-offs it causes until they are done")
	user := fs.String("user", "", "user to AUTH as (changes need the admin right, query and status read)")
	pass := fs.String("pass", "", "password to AUTH with (also read from $SHOAL_PASSWORD)")
	caFile := fs.String("tls-ca", "", "connect with TLS, trusting this PEM CA bundle")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("no command given")
	}
	var addrs []string
	for a := range strings.SplitSeq(*addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	cl := controller.NewClient(addrs)
	defer cl.Close()
	cl.Username, cl.Password = *user, *pass
	if cl.Password == "" {
		cl.Password = os.Getenv("SHOAL_PASSWORD")
	}
	if *caFile != "" {
		t, err := tlsconf.ClientOnly(*caFile)
		if err != nil {
			return err
		}
		cl.TLS = t
	}
	waitCtx := ctx // waiting for hand-offs is bounded only by the caller (Ctrl-C)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	cmd, a := strings.ToLower(rest[0]), rest[1:]
	nums, err := parseNums(cmd, a)
	if err != nil {
		return err
	}
	var num uint64
	switch cmd {
	case "join":
		nodes, err := controller.ParseNodes(strings.Join(a[1:], ","))
		if err != nil {
			return err
		}
		num, err = cl.Join(ctx, nums[0], nodes)
		return settle(waitCtx, cl, out, num, err, *wait)
	case "leave":
		num, err = cl.Leave(ctx, nums[0])
		return settle(waitCtx, cl, out, num, err, *wait)
	case "move":
		num, err = cl.Move(ctx, rng(nums[0], nums[1]), nums[2])
		return settle(waitCtx, cl, out, num, err, *wait)
	case "split":
		num, err = cl.Split(ctx, rng(nums[0], nums[1]), uint16(nums[2]))
		return settle(waitCtx, cl, out, num, err, *wait)
	case "merge":
		num, err = cl.Merge(ctx, rng(nums[0], nums[1]), rng(nums[2], nums[3]))
		return settle(waitCtx, cl, out, num, err, *wait)
	case "rebalance":
		num, err = cl.Rebalance(ctx)
		return settle(waitCtx, cl, out, num, err, *wait)
	case "auto":
		if len(a) != 1 || (a[0] != "on" && a[0] != "off") {
			return errors.New("usage: shoal ctl auto on|off")
		}
		if err := cl.SetAuto(ctx, a[0] == "on"); err != nil {
			return err
		}
		fmt.Fprintf(out, "automatic rebalancing %s\n", a[0])
		return nil
	case "report":
		if len(a) != 1 {
			return errors.New("usage: shoal ctl report JSON")
		}
		var r controller.Report
		if err := json.Unmarshal([]byte(a[0]), &r); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if err := cl.Report(ctx, r); err != nil {
			return err
		}
		fmt.Fprintln(out, "OK")
		return nil
	case "query":
		n := int64(-1)
		if len(a) == 1 {
			if n, err = strconv.ParseInt(a[0], 10, 64); err != nil {
				return fmt.Errorf("query: configuration number %q: %w", a[0], err)
			}
		} else if len(a) > 1 {
			return errors.New("usage: shoal ctl query [NUM]")
		}
		c, err := cl.Query(ctx, n)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(out, c)
		}
		printConfig(out, c, nil, nil)
		return nil
	case "status":
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(out, st)
		}
		fmt.Fprintf(out, "controller replica %d (%s), leader %d, term %d, auto rebalance %s\n",
			st.Node.ID, st.Node.State, st.Node.Leader, st.Node.Term, onOff(st.Auto))
		leaders := map[uint64]string{}
		for _, gid := range st.Config.GroupIDs() {
			leaders[gid] = groupProgress(access(cl), st.Config.Groups[gid]).leader
		}
		printConfig(out, st.Config, st.Shards, leaders)
		printGroups(out, access(cl), st.Config)
		return nil
	}
	fs.Usage()
	return fmt.Errorf("unknown command %q", rest[0])
}

// parseNums checks a command's argument count and parses its numeric arguments.
func parseNums(cmd string, a []string) ([]uint64, error) {
	want := map[string]struct {
		n     int // numeric arguments
		usage string
	}{
		"join":  {1, "join GID ID=ADDR[,ID=ADDR...]"},
		"leave": {1, "leave GID"},
		"move":  {3, "move LO HI GID"},
		"split": {3, "split LO HI AT"},
		"merge": {4, "merge LO1 HI1 LO2 HI2"},
	}
	w, ok := want[cmd]
	if !ok {
		return nil, nil
	}
	if len(a) < w.n || (cmd != "join" && len(a) != w.n) || (cmd == "join" && len(a) < 2) {
		return nil, fmt.Errorf("usage: shoal ctl %s", w.usage)
	}
	out := make([]uint64, w.n)
	for i := range w.n {
		v, err := strconv.ParseUint(a[i], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a non-negative integer (usage: shoal ctl %s)", cmd, a[i], w.usage)
		}
		if cmd != "join" && cmd != "leave" && !(cmd == "move" && i == 2) && v > keyspace.NumSlots {
			return nil, fmt.Errorf("%s: slot %d is past %d", cmd, v, keyspace.NumSlots)
		}
		out[i] = v
	}
	return out, nil
}

func rng(lo, hi uint64) keyspace.Range { return keyspace.Range{Lo: uint16(lo), Hi: uint16(hi)} }

func printNum(out io.Writer, num uint64, err error) error {
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "configuration %d\n", num)
	return nil
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// printConfig prints a configuration as a table of shards (with each group's leader and the
// shards' loads when known) and a
// list of groups.
func printConfig(out io.Writer, c controller.Config, loads []controller.ShardStatus, leaders map[uint64]string) {
	fmt.Fprintf(out, "configuration %d: %d shards, %d groups\n\n", c.Num, len(c.Shards), len(c.Groups))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	withLoad := false
	for _, l := range loads {
		withLoad = withLoad || l.Reported
	}
	fmt.Fprint(tw, "slots\tcount\tgroup\t")
	if leaders != nil {
		fmt.Fprint(tw, "leader\t")
	}
	if withLoad {
		fmt.Fprint(tw, "keys\tbytes\tops/s\t")
	}
	fmt.Fprintln(tw)
	for i, s := range c.Shards {
		group := "-"
		if s.Group != 0 {
			group = strconv.FormatUint(s.Group, 10)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t", s.Range, s.Range.Len(), group)
		if leaders != nil {
			fmt.Fprintf(tw, "%s\t", cmp.Or(leaders[s.Group], "-"))
		}
		if withLoad {
			if i < len(loads) && loads[i].Reported {
				mark := ""
				if !loads[i].Measured {
					mark = "~" // estimated from a wider reported range
				}
				fmt.Fprintf(tw, "%s%.0f\t%s%.0f\t%s%.1f\t", mark, loads[i].Keys, mark, loads[i].Bytes, mark, loads[i].OpsPerSec)
			} else {
				fmt.Fprint(tw, "\t\t\t")
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(out)
	slots := c.SlotsByGroup()
	for _, id := range c.GroupIDs() {
		fmt.Fprintf(out, "group %d: %d slots, nodes %s\n", id, slots[id], controller.FormatNodes(c.Groups[id].Nodes))
	}
}

// settle prints the configuration a change produced and, when wait is set, follows the
// hand-offs it causes: once a second, each group's progress, until every group has applied the
// configuration and finished moving data.
func settle(ctx context.Context, cl *controller.Client, out io.Writer, num uint64, err error, wait bool) error {
	if err := printNum(out, num, err); err != nil || !wait {
		return err
	}
	cfg, err := cl.Query(ctx, int64(num))
	if err != nil {
		return err
	}
	prev, err := cl.Query(ctx, int64(num)-1)
	if err != nil {
		return err
	}
	// Groups that left in this configuration hand their data over too.
	groups := maps.Clone(cfg.Groups)
	for gid, g := range prev.Groups {
		if _, ok := groups[gid]; !ok {
			groups[gid] = g
		}
	}
	for {
		done := true
		var lines []string
		for _, gid := range slices.Sorted(maps.Keys(groups)) {
			p := groupProgress(access(cl), groups[gid])
			if p.config < num || !p.done {
				done = false
			}
			lines = append(lines, fmt.Sprintf("  group %d: %s", gid, p))
		}
		fmt.Fprintf(out, "%s configuration %d:\n%s\n", time.Now().Format("15:04:05"), num, strings.Join(lines, "\n"))
		if done {
			fmt.Fprintln(out, "all hand-offs done")
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// progress is one group's hand-off state as its nodes report it in INFO migration.
type progress struct {
	reachable                 bool
	config                    uint64
	done                      bool
	pulling, cleaning, giving int
	pairs, bytes              int64
	rate                      float64
	leader                    string
}

func (p progress) String() string {
	if !p.reachable {
		return "unreachable"
	}
	state := "done"
	if !p.done {
		state = fmt.Sprintf("moving: %d slots to receive, %d to release, %d to hand over", p.pulling, p.cleaning, p.giving)
	}
	return fmt.Sprintf("config %d, %s; received %d pairs, %d bytes (%.0f B/s); leader %s", p.config, state, p.pairs, p.bytes, p.rate, p.leader)
}

// groupProgress asks a group's nodes for INFO migration and raft. Movement counters live on the
// leader that did the work, so the largest figures win.
func groupProgress(acc harness.Access, g controller.Group) progress {
	var p progress
	p.leader = "?"
	for _, n := range g.Nodes {
		v, err := acc.Call(n.Addr, "INFO", "migration", "raft")
		if err != nil {
			continue
		}
		info := string(v.Str)
		num := func(k string) int64 { x, _ := strconv.ParseInt(harness.InfoField(info, k), 10, 64); return x }
		p.reachable = true
		if c := uint64(num("migration_config")); c > p.config || (c == p.config && harness.InfoField(info, "migration_done") == "1") {
			p.config = c
			p.done = harness.InfoField(info, "migration_done") == "1"
			p.pulling, p.cleaning, p.giving = int(num("migration_slots_pulling")), int(num("migration_slots_cleaning")), int(num("migration_slots_giving"))
		}
		p.pairs = max(p.pairs, num("migration_pairs_moved"))
		p.bytes = max(p.bytes, num("migration_bytes_moved"))
		if r, _ := strconv.ParseFloat(harness.InfoField(info, "migration_bytes_per_sec"), 64); r > p.rate {
			p.rate = r
		}
		if harness.InfoField(info, "raft_state") == "StateLeader" {
			p.leader = n.Addr
		}
	}
	return p
}

// printGroups prints each group's leader and hand-off state, asked of the group's nodes.
func printGroups(out io.Writer, acc harness.Access, c controller.Config) {
	fmt.Fprintln(out)
	for _, gid := range c.GroupIDs() {
		fmt.Fprintf(out, "group %d: %s\n", gid, groupProgress(acc, c.Groups[gid]))
	}
}

// access is how ctl reaches servers: with the controller client's TLS and credentials, which
// an operator's user (read right at least) has on the servers too.
func access(cl *controller.Client) harness.Access {
	return harness.Access{TLS: cl.TLS, Username: cl.Username, Password: cl.Password}
}
