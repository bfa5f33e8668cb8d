//go:build manual

package server

import (
	"context"
	"os"
	"os/signal"
	"testing"
)

func TestManualServe(t *testing.T) {
	be := newFakeBackend()
	topo := &fakeTopology{}
	s := New(Config{Addr: os.Getenv("SHOAL_ADDR"), Backend: be, Topology: topo})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	topo.setAddr(s.Addr().String())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt)
	<-ch
	s.Close()
}
