package server

import (
	"net"
	"strconv"
	"strings"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// nodeAddr is a node's client address split the way cluster replies need it.
type nodeAddr struct {
	ip   string
	port int
}

func splitHostPort(addr string) (host, port string, err error) { return net.SplitHostPort(addr) }

func parseNodeAddr(addr string) nodeAddr {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nodeAddr{ip: addr}
	}
	p, _ := strconv.Atoi(port)
	return nodeAddr{ip: host, port: p}
}

// orderedNodes returns the shard's nodes with the one presented as master first. The master
// is the raft leader; when no leader is known the shard still needs one entry clients will
// send to, and since any replica accepts any command (it forwards to the leader), the local
// node or else a healthy one is named instead of leaving the slots unassigned.
func orderedNodes(sh ShardView) (master NodeView, replicas []NodeView, ok bool) {
	if len(sh.Nodes) == 0 {
		return NodeView{}, nil, false
	}
	mi := -1
	for i, n := range sh.Nodes {
		if n.Leader {
			mi = i
			break
		}
	}
	if mi < 0 {
		for i, n := range sh.Nodes {
			if n.Myself {
				mi = i
				break
			}
		}
	}
	if mi < 0 {
		mi = 0
		for i, n := range sh.Nodes {
			if n.Healthy {
				mi = i
				break
			}
		}
	}
	for i, n := range sh.Nodes {
		if i != mi {
			replicas = append(replicas, n)
		}
	}
	return sh.Nodes[mi], replicas, true
}

// writeSlotsNode writes one CLUSTER SLOTS node entry: [ip, port, id]. go-redis accepts only
// 2 to 4 elements here, so nothing else is added.
func writeSlotsNode(c *conn, n NodeView) {
	a := parseNodeAddr(n.Addr)
	c.w.ArrayHeader(3)
	c.w.BulkString(a.ip)
	c.w.Int(int64(a.port))
	c.w.BulkString(n.ID)
}

// cmdClusterSlots answers CLUSTER SLOTS: one entry per slot range, [first, last, master,
// replicas...], with inclusive bounds. Unhealthy replicas are left out, as Redis omits failed
// ones.
func cmdClusterSlots(c *conn, args [][]byte) {
	view := c.s.topo.View()
	type entry struct {
		r        keyspace.Range
		master   NodeView
		replicas []NodeView
	}
	var entries []entry
	for _, sh := range view.Shards {
		master, reps, ok := orderedNodes(sh)
		if !ok {
			continue
		}
		healthy := reps[:0:0]
		for _, n := range reps {
			if n.Healthy {
				healthy = append(healthy, n)
			}
		}
		for _, r := range sh.Ranges {
			if !r.Empty() {
				entries = append(entries, entry{r, master, healthy})
			}
		}
	}
	c.w.ArrayHeader(len(entries))
	for _, e := range entries {
		c.w.ArrayHeader(3 + len(e.replicas))
		c.w.Int(int64(e.r.Lo))
		c.w.Int(int64(e.r.Hi) - 1)
		writeSlotsNode(c, e.master)
		for _, n := range e.replicas {
			writeSlotsNode(c, n)
		}
	}
}

// cmdClusterShards answers CLUSTER SHARDS in the Redis 7 layout (maps as flat RESP2 arrays).
func cmdClusterShards(c *conn, args [][]byte) {
	view := c.s.topo.View()
	w := c.w
	w.ArrayHeader(len(view.Shards))
	for _, sh := range view.Shards {
		w.ArrayHeader(4)
		w.BulkString("slots")
		n := 0
		for _, r := range sh.Ranges {
			if !r.Empty() {
				n++
			}
		}
		w.ArrayHeader(2 * n)
		for _, r := range sh.Ranges {
			if !r.Empty() {
				w.Int(int64(r.Lo))
				w.Int(int64(r.Hi) - 1)
			}
		}
		w.BulkString("nodes")
		master, reps, ok := orderedNodes(sh)
		if !ok {
			w.ArrayHeader(0)
			continue
		}
		w.ArrayHeader(1 + len(reps))
		writeShardNode(c, master, "master")
		for _, r := range reps {
			writeShardNode(c, r, "replica")
		}
	}
}

func writeShardNode(c *conn, n NodeView, role string) {
	a := parseNodeAddr(n.Addr)
	health := "online"
	if !n.Healthy {
		health = "failed"
	}
	w := c.w
	w.ArrayHeader(14)
	w.BulkString("id")
	w.BulkString(n.ID)
	w.BulkString("port")
	w.Int(int64(a.port))
	w.BulkString("ip")
	w.BulkString(a.ip)
	w.BulkString("endpoint")
	w.BulkString(a.ip)
	w.BulkString("role")
	w.BulkString(role)
	w.BulkString("replication-offset")
	w.Int(0)
	w.BulkString("health")
	w.BulkString(health)
}

// cmdClusterNodes answers CLUSTER NODES with one line per node in Redis's format:
//
//	<id> <ip:port@cport> <flags> <master-id|-> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot-range>...
//
// The cluster bus port is reported as port+10000, Redis's convention; Shoal has no bus.
func cmdClusterNodes(c *conn, args [][]byte) {
	view := c.s.topo.View()
	epoch := strconv.FormatUint(view.Epoch, 10)
	var b strings.Builder
	line := func(n NodeView, master bool, masterID string, ranges []keyspace.Range) {
		a := parseNodeAddr(n.Addr)
		cport := a.port + 10000
		if cport > 65535 || a.port == 0 {
			cport = 0
		}
		b.WriteString(n.ID)
		b.WriteString(" " + a.ip + ":" + strconv.Itoa(a.port) + "@" + strconv.Itoa(cport) + " ")
		if n.Myself {
			b.WriteString("myself,")
		}
		if master {
			b.WriteString("master")
		} else {
			b.WriteString("slave")
		}
		if !n.Healthy {
			b.WriteString(",fail")
		}
		b.WriteString(" " + masterID + " 0 0 " + epoch)
		if n.Healthy {
			b.WriteString(" connected")
		} else {
			b.WriteString(" disconnected")
		}
		for _, r := range ranges {
			if r.Empty() {
				continue
			}
			b.WriteString(" " + strconv.Itoa(int(r.Lo)))
			if r.Hi-1 != r.Lo {
				b.WriteString("-" + strconv.Itoa(int(r.Hi)-1))
			}
		}
		b.WriteString("\n")
	}
	for _, sh := range view.Shards {
		master, reps, ok := orderedNodes(sh)
		if !ok {
			continue
		}
		line(master, true, "-", sh.Ranges)
		for _, r := range reps {
			line(r, false, master.ID, nil)
		}
	}
	c.w.BulkString(b.String())
}

// cmdClusterInfo answers CLUSTER INFO. Slots count as ok when their shard has a healthy
// master, and the cluster state is ok when every slot is assigned and ok.
func cmdClusterInfo(c *conn, args [][]byte) {
	view := c.s.topo.View()
	assigned, okSlots := 0, 0
	known := map[string]struct{}{}
	size := 0
	var myEpoch uint64
	for _, sh := range view.Shards {
		n := 0
		for _, r := range sh.Ranges {
			n += r.Len()
		}
		master, _, ok := orderedNodes(sh)
		if !ok {
			continue
		}
		assigned += n
		if master.Healthy {
			okSlots += n
		}
		if n > 0 {
			size++
		}
		for _, nd := range sh.Nodes {
			known[nd.ID] = struct{}{}
			if nd.Myself {
				myEpoch = view.Epoch
			}
		}
	}
	state := "ok"
	if okSlots < keyspace.NumSlots {
		state = "fail"
	}
	var b strings.Builder
	kv := func(k string, v string) { b.WriteString(k + ":" + v + "\r\n") }
	kv("cluster_state", state)
	kv("cluster_slots_assigned", strconv.Itoa(assigned))
	kv("cluster_slots_ok", strconv.Itoa(okSlots))
	kv("cluster_slots_pfail", "0")
	kv("cluster_slots_fail", strconv.Itoa(assigned-okSlots))
	kv("cluster_known_nodes", strconv.Itoa(len(known)))
	kv("cluster_size", strconv.Itoa(size))
	kv("cluster_current_epoch", strconv.FormatUint(view.Epoch, 10))
	kv("cluster_my_epoch", strconv.FormatUint(myEpoch, 10))
	kv("cluster_stats_messages_sent", "0")
	kv("cluster_stats_messages_received", "0")
	kv("total_cluster_links_buffer_limit_exceeded", "0")
	c.w.BulkString(b.String())
}

// cmdClusterKeySlot answers CLUSTER KEYSLOT key.
func cmdClusterKeySlot(c *conn, args [][]byte) {
	c.w.Int(int64(keyspace.Slot(args[2])))
}

// cmdClusterMyID answers CLUSTER MYID.
func cmdClusterMyID(c *conn, args [][]byte) {
	c.w.BulkString(c.s.nodeID())
}

// nodeID is Config.NodeID, or the id of the node the topology marks as this one.
func (s *Server) nodeID() string {
	if s.cfg.NodeID != "" {
		return s.cfg.NodeID
	}
	for _, sh := range s.topo.View().Shards {
		for _, n := range sh.Nodes {
			if n.Myself {
				return n.ID
			}
		}
	}
	return ""
}
