#include "support/multiprocess.h"
#include "test_util.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <thread>

namespace zerotrain::testing {

namespace {

std::map<std::string, WorkerFn>& workers() {
  static std::map<std::string, WorkerFn> w;
  return w;
}

std::map<std::string, std::string> rank_env(const RankJob& job, int rank, int port) {
  std::map<std::string, std::string> e = job.env;
  e["ZEROTRAIN_TEST_WORKER"] = job.worker;
  e["MASTER_ADDR"] = "127.0.0.1";
  e["MASTER_PORT"] = std::to_string(port);
  const std::string r = std::to_string(rank), n = std::to_string(job.world_size);
  switch (job.style) {
    case LaunchStyle::kTorchrunAgentStore:
      e["RANK"] = r;
      e["WORLD_SIZE"] = n;
      e["LOCAL_RANK"] = r;
      e["LOCAL_WORLD_SIZE"] = n;
      e["TORCHELASTIC_USE_AGENT_STORE"] = "True";
      break;
    case LaunchStyle::kOpenMpi:
      e["OMPI_COMM_WORLD_RANK"] = r;
      e["OMPI_COMM_WORLD_SIZE"] = n;
      e["OMPI_COMM_WORLD_LOCAL_RANK"] = r;
      e["OMPI_COMM_WORLD_LOCAL_SIZE"] = n;
      break;
    case LaunchStyle::kSlurm:
      e["SLURM_PROCID"] = r;
      e["SLURM_NTASKS"] = n;
      e["SLURM_LOCALID"] = r;
      e["SLURM_NNODES"] = "1";
      break;
  }
  return e;
}

pid_t spawn(const std::map<std::string, std::string>& env, const std::string& log_path,
            const std::string& exe) {
  // Everything the child needs is prepared before fork(): between fork and exec
  // only async-signal-safe calls are allowed (the parent has threads).
  // The launch variables, and settings a developer may have exported that
  // would change what the workers do.
  static const char* const kCleared[] = {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=",
                                         "LOCAL_WORLD_SIZE=", "TORCHELASTIC_",
                                         "OMPI_COMM_WORLD_", "SLURM_", "MASTER_ADDR=",
                                         "MASTER_PORT=", "ZEROTRAIN_", "GLOO_SOCKET_IFNAME="};
  std::vector<std::string> entries;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    bool keep = true;
    for (const char* prefix : kCleared) keep = keep && entry.rfind(prefix, 0) != 0;
    const std::string key = entry.substr(0, entry.find('='));
    if (keep && env.count(key) == 0) entries.push_back(entry);
  }
  for (const auto& [k, v] : env) entries.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : entries) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> argv{const_cast<char*>(exe.c_str()), nullptr};

  const pid_t pid = fork();
  if (pid != 0) return pid;
  setpgid(0, 0);  // its own process group, so a timeout kills everything it started
  const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, STDOUT_FILENO);
  dup2(fd, STDERR_FILENO);
  execve(exe.c_str(), argv.data(), envp.data());
  _exit(127);
}

}  // namespace

// POSIX calls rather than std::filesystem here: the PyPI LibTorch exports some
// std::filesystem symbols of its own, and remove_all resolved to them crashes.
std::string self_executable() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

int free_port() {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

std::vector<RankResult> run_ranks(const RankJob& job) {
  // The launcher's store, when the ranks expect one (as torchrun's agent hosts it).
  c10::intrusive_ptr<c10d::TCPStore> agent_store;
  int port = 0;
  if (job.style == LaunchStyle::kTorchrunAgentStore) {
    c10d::TCPStoreOptions o;
    o.port = 0;
    o.isServer = true;
    o.waitWorkers = false;
    agent_store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", o);
    port = agent_store->getPort();
  } else {
    port = free_port();
  }

  std::vector<int> ranks = job.start_ranks;
  if (ranks.empty()) {
    for (int r = 0; r < job.world_size; ++r) ranks.push_back(r);
  }
  std::string dir_template = "/tmp/zerotrain-ranks-XXXXXX";
  const std::string dir = mkdtemp(dir_template.data());
  auto log_of = [&dir](int rank) { return dir + "/rank" + std::to_string(rank); };

  const std::string exe = self_executable();
  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> pids;
  std::vector<RankResult> results;
  for (int r : ranks) {
    RankResult res;
    res.rank = r;
    results.push_back(res);
    pids.push_back(spawn(rank_env(job, r, port), log_of(r), exe));
  }
  size_t running = pids.size();
  while (running > 0) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (pids[i] <= 0) continue;
      int status = 0;
      if (waitpid(pids[i], &status, WNOHANG) != pids[i]) continue;
      RankResult& res = results[i];
      res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) res.signal = WTERMSIG(status);
      pids[i] = 0;
      --running;
    }
    if (running > 0 && std::chrono::steady_clock::now() - start > job.timeout) {
      for (size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] <= 0) continue;
        kill(-pids[i], SIGKILL);
        kill(pids[i], SIGKILL);
        waitpid(pids[i], nullptr, 0);
        results[i].timed_out = true;
        results[i].signal = SIGKILL;
        results[i].seconds = std::chrono::duration<double>(job.timeout).count();
        pids[i] = 0;
      }
      running = 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& res : results) {
    res.output = read_file(log_of(res.rank));
    unlink(log_of(res.rank).c_str());
  }
  rmdir(dir.c_str());
  return results;
}

std::string describe(const RankResult& r) {
  std::ostringstream s;
  s << "rank " << r.rank << ": ";
  if (r.timed_out) {
    s << "did not finish within the harness timeout and was killed";
  } else if (r.signal != 0) {
    s << "killed by signal " << r.signal;
  } else {
    s << "exit code " << r.exit_code;
  }
  s << " after " << r.seconds << " s; output:\n" << r.output;
  return s.str();
}

::testing::AssertionResult all_ranks_succeeded(const std::vector<RankResult>& results) {
  std::ostringstream bad;
  for (const auto& r : results) {
    if (r.exit_code != 0 || r.timed_out) bad << describe(r) << "\n";
  }
  if (bad.str().empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad.str();
}

bool register_worker(const std::string& name, WorkerFn fn) {
  workers()[name] = std::move(fn);
  return true;
}

bool run_worker_if_requested(int& exit_code) {
  const char* name = std::getenv("ZEROTRAIN_TEST_WORKER");
  if (name == nullptr || *name == '\0') return false;
  auto it = workers().find(name);
  if (it == workers().end()) {
    std::fprintf(stderr, "no test worker named '%s'\n", name);
    exit_code = 2;
    return true;
  }
  try {
    exit_code = it->second();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "worker '%s' threw: %s\n", name, e.what());
    exit_code = 3;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  return true;
}

void expect_worker_succeeds(const std::string& worker, int world_size, std::chrono::seconds timeout,
                            bool print_rank0) {
  RankJob job;
  job.world_size = world_size;
  job.worker = worker;
  job.timeout = timeout;
  const std::vector<RankResult> results = run_ranks(job);
  EXPECT_TRUE(all_ranks_succeeded(results));
  if (print_rank0 && !results.empty()) std::printf("%s", results.front().output.c_str());
}

}  // namespace zerotrain::testing
