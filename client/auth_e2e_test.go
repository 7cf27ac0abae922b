package client_test

import (
	"errors"
	"testing"

	"github.com/weaseldb/weaseldb/client"
)

// A server started with a token refuses a commit without it (401) and
// accepts one from a client given WithAuthToken or $WEASELDB_AUTH_TOKEN;
// reads and subscriptions carry the token too.
func TestAuthTokenAgainstRealServer(t *testing.T) {
	const token = "s3cret-token-for-the-client-test"
	s := realServer(t, "WEASELDB_AUTH_TOKEN="+token)
	ctx := ctxT(t)

	t.Setenv(client.EnvAuthToken, "")
	_, err := client.New(s.URL, client.WithMaxAttempts(1)).Commit(ctx, client.NewTxn().Write([]byte("k"), []byte("v")))
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 401 || !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("commit without a token: %v; want a 401 *APIError matching ErrUnauthorized", err)
	}
	if _, err := client.New(s.URL, client.WithAuthToken("wrong")).Commit(ctx, client.NewTxn()); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("commit with a wrong token: %v; want 401", err)
	}

	withOption := client.New(s.URL, client.WithAuthToken(token))
	res, err := withOption.Commit(ctx, client.NewTxn().Write([]byte("k"), []byte("v")))
	if err != nil {
		t.Fatalf("commit WithAuthToken: %v", err)
	}

	t.Setenv(client.EnvAuthToken, token)
	fromEnv := client.New(s.URL)
	res2, err := fromEnv.Commit(ctx, client.NewTxn().Write([]byte("k"), []byte("w")))
	if err != nil || res2.Version != res.Version+1 {
		t.Fatalf("commit with $WEASELDB_AUTH_TOKEN: %+v, %v; want version %d", res2, err, res.Version+1)
	}
	if _, err := fromEnv.Status(ctx, res2.RequestID, 0); err != nil {
		t.Fatalf("status with the token: %v", err)
	}
	if _, err := fromEnv.PutPolicy(ctx, "p", 1); err != nil {
		t.Fatalf("retention with the token: %v", err)
	}
	after := uint64(0)
	sub := fromEnv.Subscribe(ctx, client.SubscribeOptions{After: &after})
	defer sub.Close()
	for seen := 0; seen < 2; {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("subscribe with the token: %v", err)
		}
		if ev.Kind == client.EventTransaction {
			seen++
		}
	}
	// An explicit empty option wins over the environment.
	if _, err := client.New(s.URL, client.WithAuthToken(""), client.WithMaxAttempts(1)).Commit(ctx, client.NewTxn()); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("WithAuthToken(\"\") with the variable set: %v; want 401", err)
	}
}
