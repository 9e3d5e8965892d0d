// resolve_launch: rank layout and rendezvous point from explicit options and the
// variables of torchrun, OpenMPI or Slurm.

#include <zerotrain/distributed.h>

#include <c10/util/Exception.h>

#include <cerrno>
#include <climits>
#include <cstdlib>

namespace zerotrain {

const char* to_string(Launcher l) {
  switch (l) {
    case Launcher::kNone: return "none (one rank)";
    case Launcher::kTorchrun: return "torchrun";
    case Launcher::kOpenMpi: return "OpenMPI";
    case Launcher::kSlurm: return "Slurm";
    case Launcher::kExplicit: return "explicit arguments";
  }
  return "?";
}

EnvLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

namespace {

int parse_int(const std::string& name, const std::string& text) {
  // Slurm writes counts such as SLURM_NTASKS_PER_NODE="2(x3)": the leading integer counts.
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  const bool ok = errno == 0 && end != text.c_str() && v >= INT_MIN && v <= INT_MAX &&
                  (*end == '\0' || *end == '(' || *end == ',');
  TORCH_CHECK(ok, "zerotrain: environment variable ", name, "='", text, "' is not an integer");
  return static_cast<int>(v);
}

/// The integer value of `name`, or nullopt when unset.
std::optional<int> env_int(const EnvLookup& env, const std::string& name) {
  auto v = env(name);
  if (!v || v->empty()) return std::nullopt;
  return parse_int(name, *v);
}

int require_int(const EnvLookup& env, const std::string& name, const std::string& because) {
  auto v = env_int(env, name);
  TORCH_CHECK(v.has_value(), "zerotrain: ", because, " but ", name, " is not set");
  return *v;
}

bool is_true(const std::optional<std::string>& v) {
  return v && (*v == "1" || *v == "True" || *v == "true" || *v == "TRUE");
}

/// Fills rank, world size and local layout from the first launcher whose
/// variables are present: torchrun, then OpenMPI, then Slurm.
void from_launcher(const EnvLookup& env, LaunchInfo& info) {
  if (env("RANK") || env("WORLD_SIZE")) {
    info.launcher = Launcher::kTorchrun;
    const std::string why = "RANK or WORLD_SIZE is set (torchrun-style launch)";
    info.rank = require_int(env, "RANK", why);
    info.world_size = require_int(env, "WORLD_SIZE", why);
    info.local_rank = env_int(env, "LOCAL_RANK").value_or(info.rank);
    info.local_world_size = env_int(env, "LOCAL_WORLD_SIZE").value_or(-1);
    info.use_agent_store = is_true(env("TORCHELASTIC_USE_AGENT_STORE"));
    info.restart_count = env_int(env, "TORCHELASTIC_RESTART_COUNT").value_or(0);
    return;
  }
  if (env("OMPI_COMM_WORLD_RANK")) {
    info.launcher = Launcher::kOpenMpi;
    const std::string why = "OMPI_COMM_WORLD_RANK is set (OpenMPI launch)";
    info.rank = require_int(env, "OMPI_COMM_WORLD_RANK", why);
    info.world_size = require_int(env, "OMPI_COMM_WORLD_SIZE", why);
    info.local_rank = require_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", why);
    info.local_world_size = env_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE").value_or(-1);
    return;
  }
  if (env("SLURM_PROCID")) {
    info.launcher = Launcher::kSlurm;
    const std::string why = "SLURM_PROCID is set (srun launch)";
    info.rank = require_int(env, "SLURM_PROCID", why);
    info.world_size = require_int(env, "SLURM_NTASKS", why);
    info.local_rank = require_int(env, "SLURM_LOCALID", why);
    const auto nodes = env_int(env, "SLURM_NNODES");
    if (nodes && *nodes == 1) {
      info.local_world_size = info.world_size;
    } else {
      info.local_world_size = env_int(env, "SLURM_NTASKS_PER_NODE").value_or(-1);
    }
  }
}

}  // namespace

LaunchInfo resolve_launch(const DistributedOptions& options, const EnvLookup& env) {
  LaunchInfo info;
  const bool explicit_layout = options.rank.has_value() || options.world_size.has_value();
  if (explicit_layout) {
    // The launcher's variables are ignored entirely (not merged), so a stale
    // or partial set of them cannot leak into an explicit layout.
    TORCH_CHECK(options.rank.has_value() && options.world_size.has_value(),
                "zerotrain::init_distributed: give both rank and world_size, or neither");
    info.launcher = Launcher::kExplicit;
    info.rank = *options.rank;
    info.world_size = *options.world_size;
    info.local_rank = info.rank;
  } else {
    from_launcher(env, info);
  }
  if (options.local_rank) info.local_rank = *options.local_rank;

  TORCH_CHECK(info.world_size >= 1, "zerotrain: world size must be at least 1, got ",
              info.world_size, " (from ", to_string(info.launcher), ")");
  TORCH_CHECK(info.rank >= 0 && info.rank < info.world_size, "zerotrain: rank ", info.rank,
              " is outside [0, ", info.world_size, ") (from ", to_string(info.launcher), ")");
  if (info.local_world_size < 0) {
    // Unknown: assume every rank is local only when there is one.
    info.local_world_size = info.world_size == 1 ? 1 : -1;
  }
  TORCH_CHECK(info.local_rank >= 0, "zerotrain: local rank ", info.local_rank, " is negative");

  // Rendezvous point.
  if (auto addr = env("MASTER_ADDR"); addr && !addr->empty()) info.master_addr = *addr;
  if (auto port = env_int(env, "MASTER_PORT")) info.master_port = *port;
  if (options.master_addr) info.master_addr = *options.master_addr;
  if (options.master_port) info.master_port = *options.master_port;
  const bool all_local = info.local_world_size == info.world_size;
  const bool addr_given = options.master_addr.has_value() || env("MASTER_ADDR").has_value();
  TORCH_CHECK(info.world_size == 1 || all_local || addr_given,
              "zerotrain: ", info.world_size, " ranks launched by ", to_string(info.launcher),
              " may span several nodes, but MASTER_ADDR is not set; export MASTER_ADDR (the "
              "host of rank 0) and MASTER_PORT to every rank (mpirun -x MASTER_ADDR -x MASTER_PORT)");
  TORCH_CHECK(info.master_port > 0 && info.master_port < 65536, "zerotrain: MASTER_PORT ",
              info.master_port, " is not a TCP port (1-65535)");
  return info;
}

int rank_cuda_device(const LaunchInfo& info, int visible_devices) {
  TORCH_CHECK(visible_devices > 0, "zerotrain: rank ", info.rank, " (LOCAL_RANK ", info.local_rank,
              ") wants a CUDA device but none is visible; check CUDA_VISIBLE_DEVICES, or train on the CPU");
  return info.local_rank % visible_devices;
}

}  // namespace zerotrain
