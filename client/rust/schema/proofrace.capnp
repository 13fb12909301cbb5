@0xbc3317a5f0efb477;
# proofrace: race theorem provers and solvers on one problem. The first decisive
# answer wins and every slower attempt still in flight is preempted at once.
#
# Evolution rules (shared with the echidna host): root messages carry
# `schemaVersion`; fields and enumerants are only ever appended, with defaults.
# No language-specific annotations live here, so every client compiles this file as is.

const currentSchemaVersion :UInt16 = 2;
# 2: roles (workers log in apart from clients), verdict grounds and conflicts, the applied
#    deadline, cache and confirmation options, worker stop reasons.

interface Gate {
  login @0 (credential :Text) -> (result :LoginResult);
  # When the server requires a credential, its bootstrap capability is a bare Gate: nothing
  # else is reachable before a successful login. A Dispatcher is also a Gate (its login
  # returns itself), so a client may always log in first, whatever the server requires.
}

struct LoginResult {
  union {
    dispatcher @0 :Dispatcher;
    refused @1 :Error;           # kind `unauthenticated`; says what was refused, nothing more
    workerHub @2 :WorkerHub;     # the credential is a worker's: it may offer provers, not solve
    worker @3 :Worker;           # from a worker's own Gate (`proofrace worker --listen`)
  }
}

interface WorkerHub {
  registerWorker @0 (worker :Worker, info :WorkerInfo) -> (registration :Registration, refused :Error);
  # The worker-facing side of a dispatcher, reached only with a worker's credential (or a
  # worker's client certificate). Offered provers must be ones the dispatcher's registry
  # already knows; `refused` says why an offer was turned down (then `registration` is null).
}

interface Dispatcher extends(Gate) {
  solve @0 (request :SolveRequest) -> (token :CancelToken);
  # Validates the request, starts the race in the background and returns at once,
  # so a call pipelined on `token` reaches a race that is still running. A refused
  # request still gets a token: its result() holds an `error` verdict.
  # Releasing every reference to the token while no result() call waits cancels the
  # race (cause `tokenDropped`); losing the connection cancels it (`disconnected`).

  provers @1 () -> (provers :List(ProverInfo));
  # Every prover this server knows, installed or not (its own and its workers').

  registerWorker @2 (worker :Worker, info :WorkerInfo) -> (registration :Registration, refused :Error);
  # Kept for old workers on a server that runs without roles. A solving client's credential
  # never grants it: such a call answers `refused` (kind `forbidden`) and a null registration.
  # Workers log in with a worker credential and register through `WorkerHub`.

  ping @3 () -> (idleTimeoutMs :UInt32);
  # Any call counts as a sign of life. A server with an idle timeout (0: none) closes a
  # connection silent for longer, cancelling its solves as `disconnected`: a client that may
  # wait longer than that on result() pings meanwhile.
}

interface CancelToken {
  cancel @0 (reason :Text) -> (status :SolveStatus);
  # Idempotent: the first cause to end a race is the one reported. Answers once the
  # cancel has been *called*; result() answers once it has *taken effect* (all reaped).

  result @1 () -> (outcome :SolveOutcome);
  # Waits until every attempt has been reaped. Any number of callers may wait.

  status @2 () -> (status :SolveStatus);
  # A snapshot for progress displays; never waits.
}

enum Format {
  auto @0;      # detected from the content
  smtlib2 @1;
  dimacs @2;
  tptp @3;
}

enum Strategy {
  firstWins @0; # the first decisive answer wins; every other attempt is preempted
  all @1;       # every attempt runs to completion (cross-checking)
  quorum @2;    # stop as soon as `quorum` provers agree on a decisive answer
}

struct SolveRequest {
  schemaVersion @0 :UInt16 = 1;
  goalId @1 :Text;           # the caller's id, echoed in the outcome and in logs
  content @2 :Data;          # the problem text
  format @3 :Format = auto;
  provers @4 :List(Text);    # empty: every installed prover that reads the format
  strategy @5 :Strategy = firstWins;
  quorum @6 :UInt8 = 2;      # agreeing provers needed by `quorum`
  timeoutMs @7 :UInt32 = 0;  # 0: the server's default; capped at the server's maximum
  confirm @8 :Bool = false;  # a decisive answer must be certified or confirmed by a second,
                             # independent prover before it is returned
  cache @9 :CachePolicy = use;
  waitForCapacityMs @10 :UInt32 = 0;  # with no prover available yet (workers still starting),
                                      # wait up to this long for one instead of `noProver`
}

enum CachePolicy {
  use @0;            # answer from the verdict cache when it holds the goal; store new verdicts
  certifiedOnly @1;  # like `use`, but only certified or confirmed verdicts may come from it
  bypass @2;         # neither read nor write the cache
  refresh @3;        # race afresh and overwrite what the cache holds
}

enum CancelCause {
  client @0;        # cancel() was called; the message is the caller's reason
  tokenDropped @1;  # every reference to the token was released while no result() waited
  disconnected @2;  # the caller's connection closed or its process died
  timeout @3;       # the solve's deadline passed
  shutdown @4;      # the server is stopping
  preempted @5;     # another attempt decided the race; the message names it
}

struct CancelReason {
  cause @0 :CancelCause;
  message @1 :Text;          # e.g. "preempted by z3", or the caller's own words
}

enum ErrorKind {
  invalidRequest @0;     # the request contradicts itself (bad quorum, repeated prover, no content)
  unknownProver @1;      # a named prover is not in this server's registry
  proverUnavailable @2;  # a named prover is known, but nothing here runs it now (not installed, no worker)
  unsupportedFormat @3;  # the format was not recognised, or a named prover cannot read it
  requestTooLarge @4;    # the content exceeds the server's limit
  invalidInput @5;       # the provers rejected the problem text; the message is theirs
  proverError @6;        # every attempt failed
  systemError @7;        # the server could not run the attempts
  noProver @8;           # no installed prover reads the format
  unauthenticated @9;    # the credential was refused
  overloaded @10;        # too many solves in flight (on this connection or in all); retry later
  forbidden @11;         # the credential does not grant this role (a client registering a worker)
  internal @12;          # an unexpected server fault; the message names the log entry
}

enum Grounds {
  # How a decisive answer was established.
  none @0;               # no decisive answer
  unchecked @1;          # one prover's word
  modelChecked @2;       # the model it gave satisfies every clause or assertion
  proofChecked @3;       # a proof checker accepted its proof
  confirmed @4;          # a second, independent prover gave the same answer
  certificateFailed @5;  # its certificate was checked and failed: a wrong answer, never counted
}

struct Conflict {
  # Decisive answers that contradict each other with no certificate to settle them.
  proved @0 :List(Text);   # provers that answered proved
  refuted @1 :List(Text);  # provers that answered refuted
}

enum Source {
  race @0;     # provers were raced for this solve
  cache @1;    # the verdict cache answered
  joined @2;   # joined an identical race already running for another caller
}

struct CacheHit {
  foundUs @0 :UInt64;      # when the verdict was first found (microseconds since the Unix epoch)
  foundBy @1 :Text;        # the prover whose answer it was
  solveId @2 :Text;        # the solve that found it
}

struct Error {
  kind @0 :ErrorKind;
  message @1 :Text;
}

struct SolveOutcome {
  schemaVersion @0 :UInt16 = 1;
  solveId @1 :Text;          # the server's id for this solve, as in its logs
  goalId @2 :Text;
  verdict :union {
    unknown @3 :Void;        # no attempt was decisive
    proved @4 :Void;         # unsat, TPTP Theorem / Unsatisfiable / ContradictoryAxioms
    refuted @5 :Void;        # sat, TPTP CounterSatisfiable / Satisfiable
    timeout @6 :Void;        # the deadline passed before a decision
    cancelled @7 :CancelReason;
    error @8 :Error;
  }
  winner @9 :Text;           # the prover whose answer decided; empty when none did
  strategy @10 :Strategy;
  format @11 :Format;        # the format the content was read as
  attempts @12 :List(Attempt);
  disagreement @13 :Bool;    # decisive answers contradicted each other (never hidden)
  elapsedUs @14 :UInt64;     # solve accepted to every attempt reaped
  deadlineMs @15 :UInt32;    # the deadline that applied (the request's, or the server's default,
                             # capped at its maximum); 0 when the request was refused
  grounds @16 :Grounds;      # how the verdict was established
  conflict @17 :Conflict;    # set when decisive answers contradicted each other and nothing
                             # settled it: the verdict is then `unknown`, never the earlier one
  source @18 :Source;
  cached @19 :CacheHit;      # set when source is `cache`
}

enum AttemptOutcome {
  # The echidna host's eight cases, then `cancelled`.
  proved @0;
  noProofFound @1;           # includes a definite `sat` / CounterSatisfiable: see `answer`
  invalidInput @2;
  unsupportedFeature @3;
  timeout @4;
  inconsistentPremises @5;
  proverError @6;
  systemError @7;
  cancelled @8;              # stopped by the race; `stop` says why and how fast
}

enum Answer {
  none @0;                   # the prover gave no answer
  proved @1;
  refuted @2;
  unknown @3;                # the prover gave up or ran out of resources
}

struct Stop {
  reason @0 :CancelReason;
  latencyUs @1 :UInt64;      # trigger (cancel called, winner found, deadline) to process reaped
  escalated @2 :Bool;        # SIGKILL was needed after the SIGTERM grace period
}

struct Attempt {
  prover @0 :Text;
  outcome @1 :AttemptOutcome;
  answer @2 :Answer;
  status @3 :Text;           # the prover's own status line, e.g. "unsat", "SZS status Theorem"
  message @4 :Text;          # the prover's error message, when it gave one
  stop @5 :Stop;             # set only when the race stopped this attempt
  elapsedUs @6 :UInt64;      # started to reaped
  exit :union {
    notStarted @7 :Void;
    code @8 :Int32;
    signal @9 :Int32;
  }
  outputTail @10 :Text;      # the last bytes of its combined stdout and stderr
  outputBytes @11 :UInt64;   # everything it wrote, including what the tail dropped
  grounds @12 :Grounds;      # how its answer was established
  worker @13 :Text;          # the remote worker that ran it; empty when the dispatcher did
}

struct SolveStatus {
  solveId @0 :Text;
  state @1 :State;
  enum State {
    running @0;              # attempts are in flight
    cancelling @1;           # the race was decided or cancelled; losers are being stopped
    finished @2;             # every attempt is reaped: result() answers at once
  }
  cancelReason @2 :CancelReason;  # set when the race was cancelled, by whatever cause
  winner @3 :Text;
  elapsedUs @4 :UInt64;
  attempts @5 :List(AttemptStatus);
  source @6 :Source;
}

struct AttemptStatus {
  prover @0 :Text;
  state @1 :State;
  enum State {
    starting @0;
    running @1;
    stopping @2;             # signalled, not yet reaped
    finished @3;
  }
  outcome @2 :AttemptOutcome;  # meaningful once finished
  elapsedUs @3 :UInt64;
  outputBytes @4 :UInt64;      # progress: output written so far
}

struct ProverInfo {
  name @0 :Text;
  version @1 :Text;          # as the binary reports it; empty when not installed
  formats @2 :List(Format);
  available @3 :Bool;        # installed on this server
}

# --- Remote workers ---------------------------------------------------------------------------

interface Worker {
  run @0 (attempt :AttemptRequest, events :AttemptEvents) -> (result :Attempt);
  # Runs one attempt to its end on the worker's machine, and answers with it, stopped or
  # not. `stop` preempts it: the worker kills the attempt's process group, reaps it, and this
  # call answers. Cancelling the call preempts it too (a dispatcher without `stop` does so),
  # and then the answer travels as `events.ended`. If the connection dies, the worker stops
  # every attempt it runs for it.

  info @1 () -> (info :WorkerInfo);

  stop @2 (attemptId :Text, reason :CancelReason) -> ();
  # Preempts the attempt, with the real reason (deadline, preemption by a named winner, ...)
  # for the worker's metrics and logs; its `run` call then answers with the stopped attempt.
}

interface AttemptEvents {
  # Sent by a worker about one attempt, to the dispatcher that asked for it.
  started @0 (pid :UInt32) -> ();
  # Once the attempt has run for a moment (50 ms): one that answers sooner needs no event.
  ended @1 (result :Attempt) -> ();
  # Once the attempt's process is reaped: the answer of a `run` call that was cancelled, and
  # of every attempt a draining worker ends (its drain waits for these to be answered). A
  # call that answers needs no event otherwise. For a stopped attempt, `result.stop.latencyUs`
  # is the worker's own latency, from the stop reaching it to the process reaped.
}

interface Registration {
  # Held by a worker: releasing it withdraws the worker (for draining).
}

struct WorkerInfo {
  name @0 :Text;
  provers @1 :List(ProverInfo);
  slots @2 :UInt16;          # attempts it runs at once
}

struct AttemptRequest {
  prover @0 :Text;
  content @1 :Data;
  format @2 :Format;         # never auto
  timeoutMs @3 :UInt32;
  solveId @4 :Text;          # for the worker's logs
  attemptId @5 :Text;
}
