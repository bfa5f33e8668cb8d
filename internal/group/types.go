package group

import "errors"

// Errors returned by the state machine for commands that are well-formed but cannot apply to the
// value they find. The RESP layer maps each to Redis's exact error text.
var (
	// ErrNotInteger: the stored value (or the argument) is not a 64-bit decimal integer.
	ErrNotInteger = errors.New("value is not an integer or out of range")
	// ErrOverflow: INCRBY/DECRBY would overflow int64.
	ErrOverflow = errors.New("increment or decrement would overflow")
	// ErrTooLarge: APPEND would make the value longer than MaxValueLen.
	ErrTooLarge = errors.New("string exceeds maximum allowed size (proto-max-bulk-len)")
	// ErrNotLeader is returned when no leader is known and the request could not be placed.
	ErrNotLeader = errors.New("no raft leader")
	// ErrWrongGroup: the key's slot is not served by this group in its current configuration.
	ErrWrongGroup = errors.New("slot not served by this group")
)

// MaxValueLen is the longest value APPEND builds: Redis's default proto-max-bulk-len (512 MiB),
// which Redis's APPEND enforces too. It is a constant, not the server's configured limit, because
// every replica must decide the same when it applies the write.
const MaxValueLen = 512 << 20

// SetArgs are the arguments of SET as the state machine needs them.
type SetArgs struct {
	Key, Val []byte
	NX, XX   bool // only set if absent / present
	Get      bool // return the previous value
	// ExpireAt is when the key expires, in Unix milliseconds; 0 for never. A time not after the
	// moment the write applies deletes the key once written, as Redis does for SET ... PXAT in
	// the past.
	ExpireAt int64
	// KeepTTL keeps the expiry of the value replaced (SET ... KEEPTTL); ExpireAt must be 0.
	KeepTTL bool
}

// ExpireArgs are the arguments of EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT and PERSIST.
type ExpireArgs struct {
	Key []byte
	// At is the new expiry in Unix milliseconds, relative times already added to the clock. A
	// time not after the moment the write applies deletes the key (as Redis does), once the
	// conditions below hold.
	At int64
	// Persist removes the expiry instead (PERSIST); At and the conditions are then ignored.
	Persist bool
	// Redis 7's conditions: NX sets only a key without expiry, XX only one with an expiry, GT
	// only a later expiry and LT only an earlier one (a key without expiry counts as expiring
	// never).
	NX, XX, GT, LT bool
}

// SetResult is the outcome of a SET.
type SetResult struct {
	Done   bool   // the value was written (false when NX/XX prevented it)
	Old    []byte // the previous value, if Get was asked and one existed
	HadOld bool   // whether a previous value existed (meaningful when Get was asked)
}
