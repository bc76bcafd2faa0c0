package mongo_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"

	"github.com/alertrca/alertrca/store"
	"github.com/alertrca/alertrca/store/mongo"
	"github.com/alertrca/alertrca/store/storetest"
)

// startFerretDB runs FerretDB (SQLite backend) in this process on a free
// loopback port and returns its MongoDB URI.
func startFerretDB(t *testing.T) string {
	t.Helper()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: "file:" + t.TempDir() + "/",
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("start FerretDB: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return f.MongoDBURI()
}

var dbSeq atomic.Int64

func TestConformance(t *testing.T) {
	uri := startFerretDB(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := mongo.Open(ctx, uri, fmt.Sprintf("test%d", dbSeq.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there.
	_, err := mongo.Open(ctx, "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300", "x")
	if err == nil {
		t.Fatal("Open succeeded with no server")
	}
}
