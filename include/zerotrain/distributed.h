#pragma once
// Rendezvous: zerotrain::init_distributed, mirroring deepspeed.init_distributed.
// A binary started by `torchrun --no-python --nproc-per-node=N ./bin`,
// `mpirun -np N ./bin`, `srun ./bin` or plainly (one rank) calls it unchanged.

#include <zerotrain/comm.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace zerotrain {

/// Which launcher's variables described the job.
enum class Launcher { kNone, kTorchrun, kOpenMpi, kSlurm, kExplicit };
const char* to_string(Launcher l);

/// The rank layout and rendezvous point of this process.
struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;  // DeepSpeed's and torchrun's default
  Launcher launcher = Launcher::kNone;
  /// torchrun hosts the store itself (TORCHELASTIC_USE_AGENT_STORE=True):
  /// every rank connects to it as a client.
  bool use_agent_store = false;
  /// torchrun's restart count, so a restarted attempt uses fresh store keys.
  int restart_count = 0;
};

/// Explicit settings; each one given overrides the environment.
struct DistributedOptions {
  std::optional<int> rank;
  std::optional<int> world_size;
  std::optional<int> local_rank;
  std::optional<std::string> master_addr;
  std::optional<int> master_port;
  /// "gloo", "nccl", or empty for the default: Gloo for CPU tensors, plus NCCL
  /// for CUDA tensors when this build has CUDA and a GPU is visible (it creates
  /// no CUDA context until a CUDA tensor is communicated). "nccl" makes NCCL
  /// the default and selects LOCAL_RANK's GPU (rank_cuda_device). "gloo" makes
  /// Gloo carry CUDA tensors as well, so several ranks may share one GPU.
  std::string backend;
  /// Timeout and debug mode; init_distributed applies the environment overrides.
  CommOptions comm;
};

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

/// The process environment (std::getenv).
EnvLookup process_environment();

/// Works out rank, world size and rendezvous point from explicit options and
/// the launcher's variables: torchrun (RANK, WORLD_SIZE, LOCAL_RANK,
/// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE),
/// OpenMPI (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE) or Slurm
/// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE), with
/// MASTER_ADDR/MASTER_PORT. With nothing set: one rank. Inconsistent or
/// malformed values are errors naming the variable.
LaunchInfo resolve_launch(const DistributedOptions& options, const EnvLookup& env);

/// The CUDA device index this rank trains on: LOCAL_RANK modulo the visible
/// devices, the convention of torchrun and DeepSpeed (one rank per GPU; ranks
/// beyond the GPU count share them round-robin, which only Gloo can carry).
/// The NCCL backend binds this device; a program moves its model to
/// torch::Device(torch::kCUDA, rank_cuda_device(info, torch::cuda::device_count())),
/// not to "cuda" (cuda:0 on every rank). `visible_devices` must be positive.
int rank_cuda_device(const LaunchInfo& info, int visible_devices);

/// Creates the store (rank 0 hosts it, or torchrun's agent does), waits for all
/// ranks (naming the ones that never arrive), and builds the process group.
std::shared_ptr<Communicator> init_distributed(const DistributedOptions& options = {});

}  // namespace zerotrain
