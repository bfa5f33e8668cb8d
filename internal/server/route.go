package server

import "errors"

// keyRefs names the keys of a command without copying them: the arguments at the command's
// first..last key positions with its step (MSET's keys are every other argument).
type keyRefs struct {
	args [][]byte
	cmd  *command
}

// Len returns the number of keys.
func (k keyRefs) Len() int {
	last := k.cmd.lastKey
	if last < 0 {
		last += len(k.args)
	}
	if last < k.cmd.firstKey {
		return 0
	}
	return (last-k.cmd.firstKey)/k.cmd.step + 1
}

// At returns key i.
func (k keyRefs) At(i int) []byte { return k.args[k.cmd.firstKey+i*k.cmd.step] }

// replyError is an error whose text is sent to the client verbatim, such as
// "MOVED 3999 10.0.0.2:6379". route returns one to refuse a command.
type replyError string

func (e replyError) Error() string { return string(e) }

// route decides whether this node executes a keyed command. It runs after arity checks and
// before the handler, with asking reporting a preceding ASKING.
//
// Today a single replica group serves every slot and any replica accepts any command
// (followers forward writes and use ReadIndex for reads), so route always allows. With many
// groups it will look up each key's slot (keyspace.Slot) in the current configuration and
// return replyError("MOVED <slot> <host:port>") for slots served elsewhere,
// replyError("CROSSSLOT Keys in request don't hash to the same slot") for multi-key commands
// spanning slots, and ASK / TRYAGAIN during hand-offs.
func (s *Server) route(c *conn, cmd *command, keys keyRefs, asking bool) error {
	return nil
}

// routeError replies with the refusal route returned.
func (c *conn) routeError(err error) {
	var re replyError
	if errors.As(err, &re) {
		c.w.Error(string(re))
		return
	}
	c.backendError(err)
}
