// Command proofrace-go is a smoke client for the proofrace Dispatcher.
//
//	proofrace-go solve ADDR FILE [prover...]
//	proofrace-go cancel-pipelined ADDR FILE REASON [prover...]
//	proofrace-go drop ADDR FILE [prover...]
//	proofrace-go close ADDR FILE [prover...]
//
// With PROOFRACE_CREDENTIAL set, it logs in first (Gate.login), as a server with a
// login secret requires; a refused login exits 1.
//
// `close` starts a race, waits until it runs, closes the connection (Conn.Close)
// and prints closed_at_ns; then it stays alive until its stdin reaches end of
// file, so that what the server sees is the close, not the process exiting.
//
// It prints key=value lines on stdout so that scripts and tests can read them.
// Exit status: 0 when the server answered, 1 on an RPC or I/O failure, 2 on bad usage.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"capnproto.org/go/capnp/v3/rpc"

	"proofrace/client/go/internal/schema"
)

const usage = `usage:
  proofrace-go solve ADDR FILE [prover...]
  proofrace-go cancel-pipelined ADDR FILE REASON [prover...]
  proofrace-go drop ADDR FILE [prover...]
  proofrace-go close ADDR FILE [prover...]
environment: PROOFRACE_CREDENTIAL (log in with it first)`

// How long `drop` polls status() for the race to be running before giving up.
const runningDeadline = 30 * time.Second

func main() {
	args := os.Args[1:]
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, addr, file := args[0], args[1], args[2]
	rest := args[3:]

	var run func(context.Context, schema.Dispatcher, []byte) error
	switch cmd {
	case "solve":
		run = func(ctx context.Context, d schema.Dispatcher, content []byte) error {
			return solve(ctx, d, goalID(file), content, rest)
		}
	case "cancel-pipelined":
		if len(rest) < 1 {
			fmt.Fprintln(os.Stderr, usage)
			os.Exit(2)
		}
		reason := rest[0]
		run = func(ctx context.Context, d schema.Dispatcher, content []byte) error {
			return cancelPipelined(ctx, d, goalID(file), content, reason, rest[1:])
		}
	case "drop":
		run = func(ctx context.Context, d schema.Dispatcher, content []byte) error {
			return drop(ctx, d, goalID(file), content, rest)
		}
	case "close":
		content, err := os.ReadFile(file)
		if err != nil {
			fail(err)
		}
		if err := closeWhileRunning(addr, goalID(file), content, rest); err != nil {
			fail(err)
		}
		return
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}

	content, err := os.ReadFile(file)
	if err != nil {
		fail(err)
	}
	if err := withDispatcher(addr, func(ctx context.Context, d schema.Dispatcher) error {
		return run(ctx, d, content)
	}); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "proofrace-go:", err)
	os.Exit(1)
}

func goalID(file string) string {
	return "proofrace-go:" + filepath.Base(file)
}

// withDispatcher connects, runs f with the server's dispatcher and closes the
// connection afterwards. Closing is what a server sees as `disconnected`, so f
// must have finished with every race before returning.
func withDispatcher(addr string, f func(context.Context, schema.Dispatcher) error) error {
	ctx := context.Background()
	conn, d, err := connect(ctx, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer d.Release()
	return f(ctx, d)
}

// connect dials addr and returns the dispatcher: the bootstrap capability, or,
// with PROOFRACE_CREDENTIAL set, what Gate.login answers for it.
func connect(ctx context.Context, addr string) (*rpc.Conn, schema.Dispatcher, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, schema.Dispatcher{}, err
	}
	conn := rpc.NewConn(rpc.NewStreamTransport(nc), nil)
	bootstrap := conn.Bootstrap(ctx)
	credential, ok := os.LookupEnv("PROOFRACE_CREDENTIAL")
	if !ok {
		return conn, schema.Dispatcher(bootstrap), nil
	}
	d, err := login(ctx, schema.Gate(bootstrap), credential)
	if err != nil {
		conn.Close()
		return nil, schema.Dispatcher{}, err
	}
	fmt.Println("login=ok")
	return conn, d, nil
}

// login presents the credential to the server's Gate; a Dispatcher is a Gate
// too, so this works whether or not the server requires it.
func login(ctx context.Context, gate schema.Gate, credential string) (schema.Dispatcher, error) {
	defer gate.Release()
	fut, release := gate.Login(ctx, func(p schema.Gate_login_Params) error {
		return p.SetCredential(credential)
	})
	defer release()
	res, err := fut.Struct()
	if err != nil {
		return schema.Dispatcher{}, fmt.Errorf("login: %w", err)
	}
	answer, err := res.Result()
	if err != nil {
		return schema.Dispatcher{}, err
	}
	switch answer.Which() {
	case schema.LoginResult_Which_dispatcher:
		// Borrowed from the answer, which is released on return: keep our own reference.
		return answer.Dispatcher().AddRef(), nil
	case schema.LoginResult_Which_refused:
		e, err := answer.Refused()
		if err != nil {
			return schema.Dispatcher{}, err
		}
		msg, _ := e.Message_()
		fmt.Printf("login=refused\nmessage=%s\n", oneLine(msg))
		return schema.Dispatcher{}, fmt.Errorf("login refused: %s", msg)
	default:
		return schema.Dispatcher{}, fmt.Errorf("login answered %s: not a client's credential", answer.Which())
	}
}

// closeWhileRunning closes the connection under a running race, then waits for
// stdin to end before exiting.
func closeWhileRunning(addr, goal string, content []byte, provers []string) error {
	ctx := context.Background()
	conn, d, err := connect(ctx, addr)
	if err != nil {
		return err
	}
	fut, release := startSolve(ctx, d, goal, content, provers)
	res, err := fut.Struct()
	if err != nil {
		return fmt.Errorf("solve: %w", err)
	}
	solveID, err := waitRunning(ctx, res.Token())
	if err != nil {
		return err
	}
	fmt.Printf("solve_id=%s\n", solveID)
	closedAt := time.Now().UnixNano()
	if err := conn.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	fmt.Printf("closed_at_ns=%d\n", closedAt)
	// Releasing after the close only frees local state: nothing more goes out.
	release()
	d.Release()
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// startSolve sends solve() and returns its pending answer; the token in it can
// be called at once (pipelining), before the server has answered.
func startSolve(ctx context.Context, d schema.Dispatcher, goal string, content []byte, provers []string) (schema.Dispatcher_solve_Results_Future, func()) {
	fut, release := d.Solve(ctx, func(p schema.Dispatcher_solve_Params) error {
		req, err := p.NewRequest()
		if err != nil {
			return err
		}
		if err := req.SetGoalId(goal); err != nil {
			return err
		}
		if err := req.SetContent(content); err != nil {
			return err
		}
		list, err := req.NewProvers(int32(len(provers)))
		if err != nil {
			return err
		}
		for i, name := range provers {
			if err := list.Set(i, name); err != nil {
				return err
			}
		}
		return nil
	})
	return fut, release
}

func solve(ctx context.Context, d schema.Dispatcher, goal string, content []byte, provers []string) error {
	fut, release := startSolve(ctx, d, goal, content, provers)
	defer release()
	// result() is pipelined on the token: one round trip for the whole solve.
	res, releaseRes := fut.Token().Result(ctx, nil)
	defer releaseRes()
	out, err := res.Struct()
	if err != nil {
		return err
	}
	o, err := out.Outcome()
	if err != nil {
		return err
	}
	return printOutcome(o)
}

func cancelPipelined(ctx context.Context, d schema.Dispatcher, goal string, content []byte, reason string, provers []string) error {
	fut, release := startSolve(ctx, d, goal, content, provers)
	defer release()
	tok := fut.Token()

	// The cancel is queued behind solve() on the same connection and targets
	// the promised answer, so it reaches the race while solve() has not returned.
	cancel, releaseCancel := tok.Cancel(ctx, func(p schema.CancelToken_cancel_Params) error {
		return p.SetReason(reason)
	})
	defer releaseCancel()
	fmt.Printf("cancel_before_return=%t\n", !isDone(fut.Done()))

	// Wait for the cancel's own answer: a call whose promise is dropped at once
	// may never run on the server.
	cres, err := cancel.Struct()
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	st, err := cres.Status()
	if err != nil {
		return err
	}
	fmt.Printf("cancel_state=%s\n", st.State())

	// solve() has answered by now (the cancel was delivered after it returned).
	// Later calls go to the token in that answer, not to the pipeline, whose
	// question go-capnp finishes on its own once the answer is in.
	solved, err := fut.Struct()
	if err != nil {
		return fmt.Errorf("solve: %w", err)
	}
	res, releaseRes := solved.Token().Result(ctx, nil)
	defer releaseRes()
	out, err := res.Struct()
	if err != nil {
		return fmt.Errorf("result: %w", err)
	}
	o, err := out.Outcome()
	if err != nil {
		return err
	}
	return printOutcome(o)
}

func drop(ctx context.Context, d schema.Dispatcher, goal string, content []byte, provers []string) error {
	fut, release := startSolve(ctx, d, goal, content, provers)
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	// Take the token from the answer rather than from the pipeline: go-capnp
	// resolves a pipelined client in the background, and with it the release
	// at times did not reach the server before the client exited.
	res, err := fut.Struct()
	if err != nil {
		return fmt.Errorf("solve: %w", err)
	}
	tok := res.Token()

	solveID, err := waitRunning(ctx, tok)
	if err != nil {
		return err
	}
	fmt.Printf("solve_id=%s\n", solveID)

	// The token is only borrowed from the solve() answer: releasing that answer
	// releases the last reference, and the server sees the Release message.
	droppedAt := time.Now().UnixNano()
	release()
	released = true
	fmt.Printf("dropped_at_ns=%d\n", droppedAt)

	// Messages on one connection are handled in order, so once this answer
	// arrives the server has processed the Release as well.
	pv, releasePv := d.Provers(ctx, nil)
	defer releasePv()
	pres, err := pv.Struct()
	if err != nil {
		return fmt.Errorf("provers: %w", err)
	}
	fmt.Printf("acked_at_ns=%d\n", time.Now().UnixNano())
	list, err := pres.Provers()
	if err != nil {
		return err
	}
	fmt.Printf("provers=%d\n", list.Len())
	return nil
}

// waitRunning polls status() until every attempt's process is running, and
// returns the solve id. status() never waits, so polling is the only way.
func waitRunning(ctx context.Context, tok schema.CancelToken) (string, error) {
	deadline := time.Now().Add(runningDeadline)
	for {
		id, running, err := snapshot(ctx, tok)
		if err != nil {
			return "", fmt.Errorf("status: %w", err)
		}
		if running {
			return id, nil
		}
		if time.Now().After(deadline) {
			return "", errors.New("the race did not reach the running state in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func snapshot(ctx context.Context, tok schema.CancelToken) (id string, running bool, err error) {
	fut, release := tok.Status(ctx, nil)
	defer release()
	res, err := fut.Struct()
	if err != nil {
		return "", false, err
	}
	st, err := res.Status()
	if err != nil {
		return "", false, err
	}
	if id, err = st.SolveId(); err != nil {
		return "", false, err
	}
	if st.State() != schema.SolveStatus_State_running {
		if st.State() == schema.SolveStatus_State_finished {
			return id, false, errors.New("the race finished before it could be dropped")
		}
		return id, false, nil
	}
	attempts, err := st.Attempts()
	if err != nil {
		return "", false, err
	}
	for i := 0; i < attempts.Len(); i++ {
		if attempts.At(i).State() != schema.AttemptStatus_State_running {
			return id, false, nil
		}
	}
	return id, attempts.Len() > 0, nil
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func printOutcome(o schema.SolveOutcome) error {
	solveID, _ := o.SolveId()
	goal, _ := o.GoalId()
	winner, _ := o.Winner()
	fmt.Printf("solve_id=%s\ngoal_id=%s\n", solveID, goal)

	v := o.Verdict()
	fmt.Printf("verdict=%s\n", v.Which())
	switch v.Which() {
	case schema.SolveOutcome_verdict_Which_cancelled:
		r, err := v.Cancelled()
		if err != nil {
			return err
		}
		msg, _ := r.Message_() // capnpc-go renames `message`: Message() is the capnp.Message
		fmt.Printf("cause=%s\nmessage=%s\n", r.Cause(), oneLine(msg))
	case schema.SolveOutcome_verdict_Which_error:
		e, err := v.Error()
		if err != nil {
			return err
		}
		msg, _ := e.Message_()
		fmt.Printf("error_kind=%s\nmessage=%s\n", e.Kind(), oneLine(msg))
	}
	fmt.Printf("winner=%s\n", winner)

	attempts, err := o.Attempts()
	if err != nil {
		return err
	}
	parts := make([]string, 0, attempts.Len())
	for i := 0; i < attempts.Len(); i++ {
		a := attempts.At(i)
		name, _ := a.Prover()
		part := name + ":" + a.Outcome().String()
		if a.HasStop() {
			if stop, err := a.Stop(); err == nil {
				if r, err := stop.Reason(); err == nil {
					part += "/" + r.Cause().String()
				}
			}
		}
		parts = append(parts, part)
	}
	fmt.Printf("attempts=%s\nelapsed_us=%d\n", strings.Join(parts, ","), o.ElapsedUs())
	return nil
}

// oneLine keeps every value on its own key=value line.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ")
}
