// init_distributed: the store, the arrival check and the process group.

#include <zerotrain/distributed.h>

#include "comm/backends.h"
#include "comm/error_text.h"
#include "comm/state.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <atomic>
#include <sstream>

namespace zerotrain {

namespace {

using comm_detail::error_text;
using comm_detail::StoreInfo;

/// Rank 0 hosts the store unless torchrun's agent already does; one rank needs none.
c10::intrusive_ptr<c10d::Store> open_store(const LaunchInfo& info, std::chrono::milliseconds timeout,
                                           StoreInfo& where) {
  if (info.world_size == 1) {
    where = StoreInfo{"(in process)", -1};
    return c10::make_intrusive<c10d::HashStore>();
  }
  const std::string address = info.master_addr + ":" + std::to_string(info.master_port);
  const bool host = !info.use_agent_store && info.rank == 0;
  where = StoreInfo{address, info.use_agent_store ? -1 : 0};
  c10d::TCPStoreOptions o;
  o.port = static_cast<uint16_t>(info.master_port);
  o.isServer = host;
  o.waitWorkers = false;  // the arrival check below names who is missing
  o.timeout = timeout;
  try {
    return c10::make_intrusive<c10d::TCPStore>(info.master_addr, o);
  } catch (const std::exception& e) {
    if (host) {
      TORCH_CHECK(false, "zerotrain: rank 0 could not host the rendezvous store on port ",
                  info.master_port, " (", error_text(e),
                  "); another job may be using it: choose a free MASTER_PORT");
    }
    TORCH_CHECK(false, "zerotrain: rank ", info.rank, " could not reach the rendezvous store at ",
                address, " within ", timeout.count() / 1000.0, " s (", error_text(e), "); ",
                info.use_agent_store ? "torchrun's agent hosts it"
                                     : "rank 0 hosts it: is rank 0 running, and are MASTER_ADDR "
                                       "and MASTER_PORT the same on every rank?");
  }
}

/// Every rank announces itself; a rank that does not within the timeout is named.
void wait_for_all_ranks(c10d::Store& store, const LaunchInfo& info,
                        std::chrono::milliseconds timeout, const StoreInfo& where) {
  store.set("arrived/" + std::to_string(info.rank), std::vector<uint8_t>{'1'});
  std::vector<std::string> keys;
  for (int r = 0; r < info.world_size; ++r) keys.push_back("arrived/" + std::to_string(r));
  try {
    store.wait(keys, timeout);
  } catch (const std::exception& e) {
    std::ostringstream absent;
    for (int r = 0; r < info.world_size; ++r) {
      if (!store.check({keys[r]})) absent << " " << r;
    }
    TORCH_CHECK(false, "zerotrain: rendezvous at ", where.address, ": ranks", absent.str(),
                " did not join within ", timeout.count() / 1000.0, " s (world size ",
                info.world_size, ", launched by ", to_string(info.launcher), "; ",
                error_text(e), ")");
  }
}

}  // namespace

std::shared_ptr<Communicator> init_distributed(const DistributedOptions& options) {
  const LaunchInfo info = resolve_launch(options, process_environment());
  const CommOptions comm = options.comm.with_environment();
  TORCH_CHECK(options.backend.empty() || options.backend == "gloo" || options.backend == "nccl",
              "zerotrain::init_distributed: backend must be \"gloo\", \"nccl\" or empty (both), "
              "not \"",
              options.backend, "\"");

  StoreInfo where;
  auto root_store = open_store(info, comm.timeout, where);
  // A fresh namespace per torchrun attempt (the agent's store outlives
  // restarts) and per call in this process (a program may re-initialize after
  // an error; every rank makes the same calls in the same order).
  static std::atomic<int> calls{0};
  auto store = c10::make_intrusive<c10d::PrefixStore>(
      "zerotrain/attempt_" + std::to_string(info.restart_count) + "/init_" +
          std::to_string(calls++),
      root_store);
  wait_for_all_ranks(*store, info, comm.timeout, where);

  comm_detail::BackendSetup setup;
  setup.store = store;
  setup.rank = info.rank;
  setup.world_size = info.world_size;
  setup.local_rank = info.local_rank;
  setup.timeout = comm.timeout;
  setup.master_addr = info.master_addr;
  comm_detail::BackendChoice choice;
  choice.nccl = options.backend == "nccl" || (options.backend.empty() && comm_detail::nccl_available());
  choice.nccl_default = options.backend == "nccl";
  choice.gloo_cuda = options.backend == "gloo";
  setup.select_device = choice.nccl_default;
  auto group = comm_detail::make_process_group(setup, choice);
  // Channels (Communicator::open_channel) get groups built the same way.
  comm_detail::GroupFactory factory = [setup, choice](const c10::intrusive_ptr<c10d::Store>& s) {
    comm_detail::BackendSetup on = setup;
    on.store = s;
    return comm_detail::make_process_group(on, choice);
  };
  return comm_detail::make_communicator(group, store, where, comm, std::move(factory));
}

}  // namespace zerotrain
