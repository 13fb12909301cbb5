// proofrace-cpp: a smoke client for the proofrace Dispatcher.
//
//   proofrace-cpp solve ADDR FILE [prover...]
//   proofrace-cpp cancel-pipelined ADDR FILE REASON [prover...]
//   proofrace-cpp drop ADDR FILE [prover...]
//   proofrace-cpp destroy ADDR FILE [prover...]
//
// With PROOFRACE_CREDENTIAL set, it logs in first (Gate.login), as a server with a
// login secret requires; a refused login exits 1.
//
// `destroy` starts a race, waits until it runs, destroys the EzRpcClient (which
// closes the connection) and prints destroyed_at_ns; then it stays alive until
// its stdin reaches end of file, so that what the server sees is the client's
// destruction, not the process exiting.
//
// It prints key=value lines on stdout so that scripts and tests can read them.
// Exit status: 0 when the server answered, 1 on an RPC or I/O failure, 2 on bad usage.

#include "proofrace.capnp.h"

#include <capnp/dynamic.h>
#include <capnp/ez-rpc.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/exception.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

const char USAGE[] =
    "usage:\n"
    "  proofrace-cpp solve ADDR FILE [prover...]\n"
    "  proofrace-cpp cancel-pipelined ADDR FILE REASON [prover...]\n"
    "  proofrace-cpp drop ADDR FILE [prover...]\n"
    "  proofrace-cpp destroy ADDR FILE [prover...]\n"
    "environment: PROOFRACE_CREDENTIAL (log in with it first)\n";

// How long `drop` polls status() for the race to be running before giving up.
constexpr auto RUNNING_DEADLINE = 30 * kj::SECONDS;
constexpr auto POLL_INTERVAL = 20 * kj::MILLISECONDS;

struct Args {
  std::string addr;
  std::string file;
  std::string reason;
  std::vector<std::string> provers;
};

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string goalId(const std::string& file) {
  auto slash = file.find_last_of('/');
  return "proofrace-cpp:" + (slash == std::string::npos ? file : file.substr(slash + 1));
}

long long unixNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The schema's own enumerant names, so both clients print the same words.
template <typename E>
std::string enumName(E value) {
  capnp::DynamicEnum dynamic(capnp::Schema::from<E>(), static_cast<uint16_t>(value));
  KJ_IF_MAYBE(e, dynamic.getEnumerant()) {
    return e->getProto().getName().cStr();
  }
  return std::to_string(static_cast<uint16_t>(value));
}

// Keeps every value on its own key=value line.
std::string oneLine(capnp::Text::Reader text) {
  std::string s = text.cStr();
  for (auto& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

// The server's dispatcher: the bootstrap capability or, with PROOFRACE_CREDENTIAL
// set, what Gate.login answers for it (a Dispatcher is a Gate too, so logging in
// works whether or not the server requires it).
Dispatcher::Client dispatcherOf(capnp::EzRpcClient& client) {
  const char* credential = std::getenv("PROOFRACE_CREDENTIAL");
  if (credential == nullptr) return client.getMain<Dispatcher>();
  auto req = client.getMain<Gate>().loginRequest();
  req.setCredential(credential);
  auto response = req.send().wait(client.getWaitScope());
  auto result = response.getResult();
  switch (result.which()) {
    case LoginResult::DISPATCHER:
      std::cout << "login=ok\n";
      return result.getDispatcher();
    case LoginResult::REFUSED:
      std::cout << "login=refused\nmessage=" << oneLine(result.getRefused().getMessage())
                << "\n";
      throw std::runtime_error(std::string("login refused: ") +
                               result.getRefused().getMessage().cStr());
    default:
      throw std::runtime_error("login answered with a role that may not solve");
  }
}

capnp::RemotePromise<Dispatcher::SolveResults> startSolve(Dispatcher::Client& dispatcher,
                                                          const Args& args,
                                                          const std::string& content) {
  auto req = dispatcher.solveRequest();
  auto r = req.initRequest();
  r.setGoalId(goalId(args.file));
  r.setContent(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(content.data()),
                                   content.size()));
  auto provers = r.initProvers(args.provers.size());
  for (size_t i = 0; i < args.provers.size(); ++i) provers.set(i, args.provers[i]);
  return req.send();
}

void printOutcome(SolveOutcome::Reader o) {
  std::cout << "solve_id=" << o.getSolveId().cStr() << "\n"
            << "goal_id=" << o.getGoalId().cStr() << "\n";
  auto v = o.getVerdict();
  switch (v.which()) {
    case SolveOutcome::Verdict::UNKNOWN: std::cout << "verdict=unknown\n"; break;
    case SolveOutcome::Verdict::PROVED: std::cout << "verdict=proved\n"; break;
    case SolveOutcome::Verdict::REFUTED: std::cout << "verdict=refuted\n"; break;
    case SolveOutcome::Verdict::TIMEOUT: std::cout << "verdict=timeout\n"; break;
    case SolveOutcome::Verdict::CANCELLED: {
      auto r = v.getCancelled();
      std::cout << "verdict=cancelled\n"
                << "cause=" << enumName(r.getCause()) << "\n"
                << "message=" << oneLine(r.getMessage()) << "\n";
      break;
    }
    case SolveOutcome::Verdict::ERROR: {
      auto e = v.getError();
      std::cout << "verdict=error\n"
                << "error_kind=" << enumName(e.getKind()) << "\n"
                << "message=" << oneLine(e.getMessage()) << "\n";
      break;
    }
    default:
      // A verdict appended to the schema after this client was built.
      std::cout << "verdict=" << static_cast<int>(v.which()) << "\n";
  }
  std::cout << "winner=" << o.getWinner().cStr() << "\n";
  std::string attempts;
  for (auto a : o.getAttempts()) {
    if (!attempts.empty()) attempts += ",";
    attempts += std::string(a.getProver().cStr()) + ":" + enumName(a.getOutcome());
    if (a.hasStop()) attempts += "/" + enumName(a.getStop().getReason().getCause());
  }
  std::cout << "attempts=" << attempts << "\n"
            << "elapsed_us=" << o.getElapsedUs() << "\n";
}

void solve(capnp::EzRpcClient& client, const Args& args, const std::string& content) {
  auto& ws = client.getWaitScope();
  auto dispatcher = dispatcherOf(client);
  auto solveP = startSolve(dispatcher, args, content);
  // result() is pipelined on the token: one round trip for the whole solve.
  auto resultP = solveP.getToken().resultRequest().send();
  // Holding the solve() answer keeps a reference to the token while result() waits.
  auto solved = solveP.wait(ws);
  auto result = resultP.wait(ws);
  printOutcome(result.getOutcome());
}

void cancelPipelined(capnp::EzRpcClient& client, const Args& args, const std::string& content) {
  auto& ws = client.getWaitScope();
  auto dispatcher = dispatcherOf(client);
  auto solveP = startSolve(dispatcher, args, content);
  auto token = solveP.getToken();

  bool returned = false;
  auto solveDone = solveP
                       .then([&returned](capnp::Response<Dispatcher::SolveResults>&& r) {
                         returned = true;
                         return kj::mv(r);
                       })
                       .eagerlyEvaluate(nullptr);

  // The cancel targets the promised answer of solve(), so it is sent before
  // solve() has returned and reaches the race while it runs.
  auto cancelReq = token.cancelRequest();
  cancelReq.setReason(args.reason);
  auto cancelP = cancelReq.send();
  std::cout << "cancel_before_return=" << (returned ? "false" : "true") << "\n";

  // Wait for the cancel's own answer: a call whose promise is dropped at once
  // may never run on the server.
  auto cancelled = cancelP.wait(ws);
  std::cout << "cancel_state=" << enumName(cancelled.getStatus().getState()) << "\n";

  auto result = token.resultRequest().send().wait(ws);
  auto solved = solveDone.wait(ws);
  printOutcome(result.getOutcome());
}

// True once every attempt's process is running. status() never waits, so
// polling it is the only way to learn this.
bool isRunning(SolveStatus::Reader st) {
  if (st.getState() == SolveStatus::State::FINISHED) {
    throw std::runtime_error("the race finished before it could be dropped");
  }
  if (st.getState() != SolveStatus::State::RUNNING) return false;
  auto attempts = st.getAttempts();
  for (auto a : attempts) {
    if (a.getState() != AttemptStatus::State::RUNNING) return false;
  }
  return attempts.size() > 0;
}

// Polls status() until every attempt runs, then prints the solve id.
void waitRunning(capnp::EzRpcClient& client, CancelToken::Client& token) {
  auto& ws = client.getWaitScope();
  auto& timer = client.getIoProvider().getTimer();
  auto deadline = timer.now() + RUNNING_DEADLINE;
  for (;;) {
    auto status = token.statusRequest().send().wait(ws);
    auto st = status.getStatus();
    if (isRunning(st)) {
      std::cout << "solve_id=" << st.getSolveId().cStr() << "\n";
      return;
    }
    if (timer.now() > deadline) {
      throw std::runtime_error("the race did not reach the running state in time");
    }
    timer.afterDelay(POLL_INTERVAL).wait(ws);
  }
}

void drop(capnp::EzRpcClient& client, const Args& args, const std::string& content) {
  auto& ws = client.getWaitScope();
  auto dispatcher = dispatcherOf(client);

  long long droppedAt;
  {
    auto solved = startSolve(dispatcher, args, content).wait(ws);
    CancelToken::Client token = solved.getToken();
    waitRunning(client, token);
    droppedAt = unixNanos();
    // Leaving this scope destroys `token` and `solved`, the last references:
    // the RPC system sends Release for the token at once.
  }
  std::cout << "dropped_at_ns=" << droppedAt << "\n";

  // Messages on one connection are handled in order, so once this answer
  // arrives the server has processed the Release as well.
  auto provers = dispatcher.proversRequest().send().wait(ws);
  std::cout << "acked_at_ns=" << unixNanos() << "\n"
            << "provers=" << provers.getProvers().size() << "\n";
}

// Destroys the whole client under a running race, then waits for stdin to end.
void destroy(std::unique_ptr<capnp::EzRpcClient> client, const Args& args,
             const std::string& content) {
  {
    auto dispatcher = dispatcherOf(*client);
    auto solved = startSolve(dispatcher, args, content).wait(client->getWaitScope());
    CancelToken::Client token = solved.getToken();
    waitRunning(*client, token);
    std::cout.flush();
    // Capabilities go first: they belong to the client's event loop.
  }
  long long destroyedAt = unixNanos();
  client.reset();
  std::cout << "destroyed_at_ns=" << destroyedAt << "\n";
  std::cout.flush();
  std::string line;
  while (std::getline(std::cin, line)) {
  }
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc < 4) {
    std::cerr << USAGE;
    return 2;
  }
  std::string cmd = argv[1];
  Args args;
  args.addr = argv[2];
  args.file = argv[3];
  int next = 4;
  if (cmd == "cancel-pipelined") {
    if (argc < 5) {
      std::cerr << USAGE;
      return 2;
    }
    args.reason = argv[next++];
  } else if (cmd != "solve" && cmd != "drop" && cmd != "destroy") {
    std::cerr << USAGE;
    return 2;
  }
  for (int i = next; i < argc; ++i) args.provers.push_back(argv[i]);

  try {
    auto content = readFile(args.file);
    if (cmd == "destroy") {
      destroy(std::make_unique<capnp::EzRpcClient>(args.addr), args, content);
      return 0;
    }
    capnp::EzRpcClient client(args.addr);
    if (cmd == "solve") {
      solve(client, args, content);
    } else if (cmd == "cancel-pipelined") {
      cancelPipelined(client, args, content);
    } else {
      drop(client, args, content);
    }
    std::cout.flush();
  } catch (const kj::Exception& e) {
    std::cerr << "proofrace-cpp: " << e.getDescription().cStr() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "proofrace-cpp: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
