// Package client is the Go client of WeaselDB's HTTP API (see the project's
// API contract). It speaks HTTP only, through net/http with a keep-alive
// connection pool, and is what loadgen and the Go end-to-end tests use.
//
// # Use
//
// The examples (Example, ExampleClient_Subscribe, ExampleMirror_Update) are
// these steps as code that runs in go test.
//
//  1. Make one Client and share it: c := client.New("http://127.0.0.1:8080").
//     It is safe for concurrent use; its connection pool is reused. Give a
//     leader and its replicas as "http://a:8080,http://b:8080" (see
//     Endpoints below), and a token with WithAuthToken or
//     $WEASELDB_AUTH_TOKEN.
//  2. Read the current version: v, err := c.Version(ctx).
//  3. Build the state you need from the log with Subscribe, and commit with
//     the reads you made as preconditions: c.Commit(ctx,
//     client.NewTxn().ReadVersion(v.Version).PointRead(k).Write(k, val)).
//     Tell the outcomes apart with errors.Is: nil (committed at
//     res.Version), ErrConflict (someone wrote what you read: re-read,
//     retry), ErrTooOld (the read version left the conflict window:
//     re-read), ErrOutcomeUnknown (see Safe retries).
//  4. Follow the log: s := c.Subscribe(ctx, client.SubscribeOptions{After:
//     &v.Version}); defer s.Close(); then loop on s.Next(ctx).
//
// For the common read-modify-write, Mirror does steps 3 and 4: it keeps a
// key range current from the log, and Mirror.Update runs a function
// against it and commits what it did, retrying on conflict (etcd's STM).
//
// # Endpoints and failover
//
// With several endpoints, every request goes to the current one; a
// connection error moves the client to the next. A replica answers commits,
// status queries and retention changes with 307 to the leader: the client
// follows it to the Location with the same method, body and token, and
// sends later requests to that leader until a connection to it fails. A
// commit that could not connect is sent again at once (it never left); one
// whose answer was lost is resolved with /v1/status, which reaches the new
// leader the same way (see below). A Subscription reconnects to the next
// endpoint with Last-Event-ID and checks prev_version, so it goes on across
// a takeover without a gap.
//
// # Safe retries
//
// Every commit carries a request_id (a random 32-hex one when the caller set
// none). When the answer to a commit is lost — a transport error, a timeout,
// a 5xx — the client does not simply send it again: it first asks
// /v1/status?request_id= (polling while the server says in_flight) and
// retries only when the server says not_committed. A commit that the server
// did make is returned as a success with Resolved set. If the outcome cannot
// be learned (no server answers for WithOutcomeWait, the context ends),
// Commit returns
// an *OutcomeUnknownError (errors.Is(err, ErrOutcomeUnknown)); the caller may
// ask Status later with the same request id. Retries reuse the request id, so
// even a retry racing a late first attempt is deduplicated by the server.
//
// # Errors
//
// Every non-2xx answer becomes an *APIError carrying the server's code,
// message and, for commits, the reason, failing precondition indexes,
// latest version and leader id. errors.Is matches it against the sentinels
// ErrConflict, ErrTooOld, ErrLeaderChanged, ErrFutureVersion, ErrBadRequest,
// ErrUnauthorized, ErrNotFound, ErrGone, ErrPayloadTooLarge,
// ErrTooManyRequests and ErrUnavailable.
//
// # Subscriptions
//
// A Subscription reconnects by itself (Last-Event-ID and after set to the
// last position it delivered, exponential backoff with full jitter, at least
// the server's SSE retry hint) and proves it saw no gap: each transaction's
// prev_version must equal the version of the previous transaction on the
// connection (or the position it connected after); otherwise Next returns a
// *GapError (errors.Is(err, ErrGap)). When After is nil the subscription
// pins its start with /v1/version first, so no transaction committed between
// the call and a reconnect can be missed.
//
// With NonDurable the server streams transactions before they are durable;
// checkpoints mark what is durable. After a reconnect (which may be to a new
// leader) the subscription resumes from the last checkpoint and, if it had
// delivered transactions after it, first returns an EventReset telling the
// caller to discard them.
package client
