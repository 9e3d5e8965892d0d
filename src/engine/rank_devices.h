#pragma once
// Note [One GPU per rank under NCCL]
// NCCL gives every rank a GPU of its own. Two ranks of one host whose
// parameters sit on the same GPU fail only at the first collective on the
// model ("Duplicate GPU detected", or a hang with older NCCL), after the model
// was built and moved. The usual cause is a program that moves its model to
// "cuda", which is cuda:0 on every rank, instead of cuda:LOCAL_RANK
// (zerotrain::rank_cuda_device). So initialize(), when the parameters are
// CUDA tensors and NCCL carries CUDA tensors in the job's process group,
// gathers every rank's host and device and names the ranks that share one,
// before any collective on the model. Gloo carrying CUDA tensors accepts a
// shared GPU: several ranks on one GPU is how a one-GPU machine runs N = 2.

#include <zerotrain/comm.h>

#include <c10/core/Device.h>

#include <string>
#include <vector>

namespace zerotrain::detail {

/// `placements[r]` is rank r's "<host> <device>". Names each pair of ranks
/// whose placement equals an earlier rank's ("ranks 0 and 2 both use cuda:0 on
/// host a"); empty when all differ.
std::string shared_devices(const std::vector<std::string>& placements);

/// Whether `comm`'s process group sends CUDA tensors through NCCL.
bool nccl_carries_cuda(const Communicator& comm);

/// Collective when `device` is a CUDA device and NCCL carries CUDA tensors
/// (the same on every rank of a job): throws on every rank, naming the ranks
/// that share a GPU. Does nothing otherwise.
void check_one_gpu_per_rank(Communicator& comm, c10::Device device);

}  // namespace zerotrain::detail
