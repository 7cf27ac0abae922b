package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strconv"

	"github.com/weaseldb/weaseldb/client"
)

// The package manual, steps 1 to 3: one client, the current version, and a
// commit whose precondition says what was read at which version.
func Example() {
	ctx := context.Background()
	// 1. One client per server (or per leader and replicas), shared.
	c := client.New(serverURL) // e.g. "http://127.0.0.1:8080"

	// 2. The current version.
	v, err := c.Version(ctx)
	if err != nil {
		log.Fatal(err)
	}

	// 3. Commit with the reads made as preconditions.
	res, err := c.Commit(ctx, client.NewTxn().
		ReadVersion(v.Version).
		PointRead([]byte("example/greeting")).
		Write([]byte("example/greeting"), []byte("hello")))
	switch {
	case err == nil:
		fmt.Println("committed after the version read:", res.Version > v.Version)
	case errors.Is(err, client.ErrConflict): // someone wrote what we read: re-read, retry
		fmt.Println("conflict")
	case errors.Is(err, client.ErrTooOld): // read version outside the conflict window: re-read
		fmt.Println("too old")
	case errors.Is(err, client.ErrOutcomeUnknown): // the answer was lost and /v1/status could not say
		fmt.Println("unknown: ask Status later with", err.(*client.OutcomeUnknownError).RequestID)
	default:
		log.Fatal(err)
	}

	// The same precondition at the old version now fails: the write above
	// came after it.
	_, err = c.Commit(ctx, client.NewTxn().
		PointReadAt([]byte("example/greeting"), v.Version).
		Write([]byte("example/greeting"), []byte("bye")))
	fmt.Println("stale read conflicts:", errors.Is(err, client.ErrConflict))
	// Output:
	// committed after the version read: true
	// stale read conflicts: true
}

// Step 4 of the package manual: follow the log from a version.
func ExampleClient_Subscribe() {
	ctx := context.Background()
	c := client.New(serverURL)
	v, err := c.Version(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Commit(ctx, client.NewTxn().Write([]byte("example/sub"), []byte("1"))); err != nil {
		log.Fatal(err)
	}

	s := c.Subscribe(ctx, client.SubscribeOptions{After: &v.Version})
	defer s.Close()
	for {
		ev, err := s.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if ev.Kind != client.EventTransaction {
			continue // a checkpoint
		}
		t := ev.Transaction
		fmt.Println("chains to the version read:", t.PrevVersion == v.Version)
		for _, op := range t.Operations {
			fmt.Printf("%s %s=%s\n", op.Type, op.Key, op.Value)
		}
		return
	}
	// Output:
	// chains to the version read: true
	// write example/sub=1
}

// A read-modify-write that retries on conflict: Mirror keeps the keys of a
// range current from the log, and Update reruns fn until its reads still
// hold when it commits.
func ExampleMirror_Update() {
	ctx := context.Background()
	c := client.New(serverURL)
	m := c.NewMirror([]byte("example/counter"), []byte("example/counter\x00"))
	defer m.Close()

	for i := 0; i < 3; i++ {
		_, err := m.Update(ctx, func(stm *client.STM) error {
			n, _ := strconv.Atoi(string(stm.Get([]byte("example/counter")))) // absent: 0
			stm.Put([]byte("example/counter"), []byte(strconv.Itoa(n+1)))
			return nil
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	v, err := c.Version(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.WaitFor(ctx, v.Version); err != nil {
		log.Fatal(err)
	}
	n, _ := m.Get([]byte("example/counter"))
	fmt.Printf("counter = %s\n", n)
	// Output: counter = 3
}

// A server configured with a token wants it on every request. Without the
// option the client reads $WEASELDB_AUTH_TOKEN.
func ExampleWithAuthToken() {
	c := client.New(serverURL, client.WithAuthToken("s3cret"))
	v, err := c.Version(context.Background())
	fmt.Println(err == nil && v.LeaderID != "")
	// Output: true
}

// A leader and its replicas: requests go to the first endpoint that
// answers, follow a replica's 307 to the leader, and move on when a server
// goes away.
func ExampleNew_endpoints() {
	c := client.New(serverURL + ",http://127.0.0.1:1") // the second is only tried if the first fails
	res, err := c.Commit(context.Background(), client.NewTxn().Write([]byte("example/endpoints"), []byte("x")))
	fmt.Println(err == nil && res.Version > 0)
	// Output: true
}
