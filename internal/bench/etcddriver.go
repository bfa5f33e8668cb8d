package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// etcdMaxTxnOps is etcd's default --max-txn-ops: a batch of SETs is sent as transactions of at
// most this many puts.
const etcdMaxTxnOps = 128

// EtcdDriver speaks to one etcd member through its v3 JSON HTTP gateway (grpc-gateway):
// POST /v3/kv/put {"key","value"} and POST /v3/kv/range {"key"}, keys and values base64. Range
// is linearizable (etcd's default), like Shoal's GET. Each driver has its own HTTP transport
// with one keep-alive connection, the analogue of one RESP connection.
type EtcdDriver struct {
	base   string // http://host:port
	client *http.Client
	tr     *http.Transport
	body   bytes.Buffer
}

// NewEtcdDriver returns a driver for the member whose client URL is base ("http://127.0.0.1:2379").
func NewEtcdDriver(base string) *EtcdDriver {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &EtcdDriver{base: base, tr: tr, client: &http.Client{Transport: tr, Timeout: opTimeout}}
}

// Do implements Driver. etcd has no pipelining over one HTTP/1.1 connection, so a batch of GETs
// runs one after another; a batch of only SETs (preloading) becomes transactions of up to 128
// puts, which is how a bulk load into etcd is done.
func (d *EtcdDriver) Do(ctx context.Context, ops []Op) (int, error) {
	allSets := len(ops) > 1
	for _, op := range ops {
		if op.Kind != OpSet {
			allSets = false
			break
		}
	}
	failed := 0
	if allSets {
		for len(ops) > 0 {
			n := min(len(ops), etcdMaxTxnOps)
			ok, err := d.post(ctx, "/v3/kv/txn", d.txnBody(ops[:n]))
			if err != nil {
				return failed, err
			}
			if !ok {
				failed += n
			}
			ops = ops[n:]
		}
		return failed, nil
	}
	for _, op := range ops {
		var ok bool
		var err error
		if op.Kind == OpSet {
			ok, err = d.post(ctx, "/v3/kv/put", d.kvBody(op.Key, op.Value))
		} else {
			ok, err = d.post(ctx, "/v3/kv/range", d.kvBody(op.Key, nil))
		}
		if err != nil {
			return failed, err
		}
		if !ok {
			failed++
		}
	}
	return failed, nil
}

func (d *EtcdDriver) kvBody(key, value []byte) []byte {
	d.body.Reset()
	d.body.WriteString(`{"key":"`)
	d.b64(key)
	if value != nil {
		d.body.WriteString(`","value":"`)
		d.b64(value)
	}
	d.body.WriteString(`"}`)
	return d.body.Bytes()
}

func (d *EtcdDriver) txnBody(ops []Op) []byte {
	d.body.Reset()
	d.body.WriteString(`{"success":[`)
	for i, op := range ops {
		if i > 0 {
			d.body.WriteByte(',')
		}
		d.body.WriteString(`{"requestPut":{"key":"`)
		d.b64(op.Key)
		d.body.WriteString(`","value":"`)
		d.b64(op.Value)
		d.body.WriteString(`"}}`)
	}
	d.body.WriteString(`]}`)
	return d.body.Bytes()
}

func (d *EtcdDriver) b64(b []byte) {
	enc := base64.StdEncoding
	n := enc.EncodedLen(len(b))
	d.body.Grow(n)
	buf := d.body.AvailableBuffer()[:n]
	enc.Encode(buf, b)
	d.body.Write(buf)
}

// post sends one request; ok is false when etcd answered with a non-200 status (a refused
// operation), err is set when the request did not complete.
func (d *EtcdDriver) post(ctx context.Context, path string, body []byte) (ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+path, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("etcd %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := d.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("etcd %s: %w", path, err)
	}
	// Drain so the connection is reused: a new TCP connection per request would measure the
	// kernel, not etcd.
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode == http.StatusOK, nil
}

// Close implements Driver.
func (d *EtcdDriver) Close() error {
	d.tr.CloseIdleConnections()
	return nil
}
