// Communicator: issues collectives on the c10d backend that owns the tensors'
// device, completes them in issue order, and turns failures into CommError.
//
// Note [Issue order is completion order]
// The engine relies on "when bucket k is done, buckets < k are done". Calls are
// serialized by State::issue_mutex, so sequence numbers follow the backend's
// issue order; c10d's Gloo backend runs on one worker thread here (see
// gloo_backend.cpp), and NCCL runs all collectives of a group on one stream, so
// the backend finishes them in that order too. CommHandle::wait() additionally
// completes every earlier pending op first, which runs their `finish` steps
// (unpacking, averaging) in order even when handles are waited out of order.
//
// Note [Gloo reduce-scatter is an all-reduce]
// c10d's Gloo backend has no reduce-scatter: its _reduce_scatter_base
// all-reduces a copy of the input and slices. Doing the same here, on the
// backend's all-reduce, gives a Work whose isCompleted() works (c10d's wrapper
// only implements wait()), and the accounting reports the all-reduce's bytes
// under "all-reduce then slice" (wire_model.h).
//
// Note [The watchdog reports what nobody waits for]
// A failure surfaces in CommHandle::wait() when the host waits. But on CUDA the
// host never blocks in wait() (NCCL orders streams), and a program may drop a
// handle or compute for a long time before its next wait. A watchdog thread per
// communicator therefore looks at the pending collectives once per heartbeat
// interval: if the backend finished the first unfinished one with an error, or
// it has not finished one interval after the timeout, the watchdog runs the
// same diagnosis, records the error as the communicator's failure (the next
// call on any thread throws it) and prints it to stderr at once, so that the
// operation, sequence number and missing ranks are on record even if the
// process is then torn down (c10d's NCCL watchdog aborts a process whose
// collective timed out; its timeout is set a little later than ours).
//
// Note [Device work is watched until it finishes]
// NCCL's Work::wait() returns as soon as the current stream waits on the
// collective's end event; the GPU may still be inside the collective, waiting
// for a peer that died. So complete_through() marks such an op done for the
// host (its results are ordered for the stream, `finish` has been enqueued)
// and, unless the backend is Gloo (whose wait() returns only when the work is
// finished), moves it to State::on_device. The watchdog polls those ops'
// isCompleted() (for NCCL: a query of the end event, never a host wait) before
// the pending ones, and one that has not finished within the timeout becomes
// the communicator's failure, diagnosed like any other: a CommError naming the
// operation and the missing ranks, printed at once and thrown by the next
// call. CommHandle::is_completed() stays false until the device has finished.
// Finished ops leave the list from the front, on every complete_through() and
// every watchdog tick, so it holds only what the device has not retired yet.
//
// Note [A failed communicator leaks its backend]
// After a failure the backend's queue may hold collectives that can only end by
// timing out one after another, and c10d's Gloo destructor waits for its queue
// to drain. A failed communicator therefore releases its process group without
// destroying it: the process is going to report the error and exit, and must
// not hang on the way out. LeakSanitizer is told so (__lsan_ignore_object).

// Note [Gathers and reductions travel on separate channels]
// A communicator completes its collectives in issue order (Note [Issue order
// is completion order]), and its backend runs them one after another: Gloo on
// one worker thread, NCCL on one stream. A parameter gather issued while
// gradient reductions are in flight would therefore wait behind all of them,
// which is exactly when a ZeRO-3 prefetch is needed. open_channel() gives a
// second communicator over the same ranks with a process group of its own
// (its own Gloo context and worker thread, or its own NCCL communicator and
// stream, ordered against the compute stream by events as c10d does), its own
// sequence numbers, heartbeat records, watchdog and failure diagnosis. The
// engine reduces gradients on the communicator it is given and gathers
// parameters on a channel it opens; each keeps issue order within itself.

#include "comm/coalesce.h"
#include "comm/error_text.h"
#include "comm/state.h"

#include <zerotrain/comm.h>

#include <ATen/record_function.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>

#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <map>
#include <sstream>

// LeakSanitizer builds (scripts/sanitize.sh) are told which leak is deliberate.
#if defined(__SANITIZE_ADDRESS__)
#define ZEROTRAIN_HAS_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define ZEROTRAIN_HAS_LSAN 1
#endif
#endif
#ifdef ZEROTRAIN_HAS_LSAN
#include <sanitizer/lsan_interface.h>
#endif

namespace zerotrain {

using comm_detail::BackendKind;
using comm_detail::error_text;
using comm_detail::first_line;
using comm_detail::OpInfo;
using comm_detail::PendingOp;
using comm_detail::State;

namespace {

c10d::ReduceOp to_c10d(ReduceOp op, BackendKind backend) {
  switch (op) {
    case ReduceOp::kSum: return c10d::ReduceOp(c10d::ReduceOp::SUM);
    case ReduceOp::kMax: return c10d::ReduceOp(c10d::ReduceOp::MAX);
    case ReduceOp::kAvg:
      return c10d::ReduceOp(comm_detail::backend_supports_avg(backend) ? c10d::ReduceOp::AVG
                                                                       : c10d::ReduceOp::SUM);
  }
  TORCH_INTERNAL_ASSERT(false, "unknown ReduceOp");
}

c10d::AllreduceOptions allreduce_options(ReduceOp op, BackendKind kind, const CommOptions& o) {
  c10d::AllreduceOptions a;
  a.reduceOp = to_c10d(op, kind);
  a.timeout = o.timeout;
  return a;
}

c10d::ReduceScatterOptions reduce_scatter_options(ReduceOp op, BackendKind kind,
                                                  const CommOptions& o) {
  c10d::ReduceScatterOptions r;
  r.reduceOp = to_c10d(op, kind);
  r.timeout = o.timeout;
  return r;
}

/// kAvg divides, so it needs a floating-point dtype.
void check_avg(const char* what, ReduceOp op, at::ScalarType dtype) {
  TORCH_CHECK(op != ReduceOp::kAvg || at::isFloatingType(dtype), "zerotrain comm: ", what,
              "(avg) needs floating-point tensors, got ", dtype);
}

/// kAvg on a backend without it: sum, then divide once the collective is done.
bool needs_division(ReduceOp op, BackendKind backend) {
  return op == ReduceOp::kAvg && !comm_detail::backend_supports_avg(backend);
}

std::string size_text(int64_t bytes) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(bytes < 10'000'000 ? 3 : 1) << bytes / 1e6 << " MB";
  return s.str();
}

std::string dtype_name(const at::Tensor& t) { return std::string(c10::toString(t.scalar_type())); }

void check_tensor(const char* what, const at::Tensor& t) {
  TORCH_CHECK(t.defined(), "zerotrain comm: ", what, ": tensor is undefined");
  TORCH_CHECK(t.is_contiguous(), "zerotrain comm: ", what, ": tensor must be contiguous");
}

void check_same_kind(const char* what, const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "zerotrain comm: ", what,
              ": output and input dtypes differ (", a.scalar_type(), " vs ", b.scalar_type(), ")");
  TORCH_CHECK(a.device() == b.device(), "zerotrain comm: ", what,
              ": output and input are on different devices (", a.device(), " vs ", b.device(),
              ")");
}


using Launch = std::function<c10::intrusive_ptr<c10d::Work>(
    c10d::Backend& backend, BackendKind kind, std::function<void()>& finish)>;

c10::intrusive_ptr<c10d::Backend> backend_for(State& s, c10::DeviceType device) {
  try {
    return s.group->getBackend(device);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "zerotrain comm: this communicator has no backend for ",
                c10::DeviceTypeName(device), " tensors (",
                first_line(e.what_without_backtrace()),
                "); CUDA tensors need NCCL, CPU tensors need Gloo");
  }
}

const char* profiler_name(Collective c) {
  switch (c) {
    case Collective::kAllReduce: return "zerotrain::comm::all_reduce";
    case Collective::kReduceScatter: return "zerotrain::comm::reduce_scatter";
    case Collective::kAllGather: return "zerotrain::comm::all_gather";
    case Collective::kBroadcast: return "zerotrain::comm::broadcast";
    case Collective::kBarrier: return "zerotrain::comm::barrier";
  }
  return "zerotrain::comm";
}

CommHandle issue(const std::shared_ptr<State>& s, OpInfo info, c10::DeviceType device,
                 const Launch& launch) {
  RECORD_FUNCTION(profiler_name(info.op), std::vector<c10::IValue>());
  std::lock_guard<std::mutex> issue_lock(s->issue_mutex);
  s->throw_if_failed();
  auto backend = backend_for(*s, device);  // before a sequence number is taken
  const BackendKind kind = comm_detail::backend_kind(backend->getBackendName());
  auto op = std::make_shared<PendingOp>();
  op->sequence = s->next_sequence++;
  op->info = std::move(info);
  if (s->check) {
    try {
      s->check->check(op->sequence, op->info.op,
                      "#" + std::to_string(op->sequence) + " " + op->info.descriptor,
                      s->health.get());
    } catch (const CommError& e) {
      std::lock_guard<std::mutex> lock(s->queue_mutex);
      if (!s->failure) s->failure = e;
      throw;
    }
  }
  op->issued_at = std::chrono::steady_clock::now();
  // See Note [Device work is watched until it finishes].
  op->finished_by_wait = kind == BackendKind::kGloo;
  try {
    op->work = launch(*backend, kind, op->finish);
  } catch (const std::exception& e) {
    // The backend refused the call on this rank only; ranks that issued it
    // would wait for this one in vain, so the communicator is done either way.
    // The heartbeat never records it as issued: peers report this rank behind.
    std::ostringstream msg;
    msg << "zerotrain comm: the " << backend->getBackendName() << " backend rejected "
        << to_string(op->info.op) << " #" << op->sequence << " (" << op->info.descriptor
        << ") on rank " << s->rank << ": "
        << error_text(e)
        << "; the other ranks may have issued it, so this communicator accepts no more "
           "collectives";
    CommError error(msg.str(), op->info.op, op->sequence, {});
    std::lock_guard<std::mutex> lock(s->queue_mutex);
    if (!s->failure) s->failure = error;
    throw error;
  }
  if (s->health) s->health->note_issued(op->sequence);
  const auto cost = comm_detail::wire_cost(kind, op->info.op, op->info.payload_bytes,
                                           s->world_size, s->rank, op->info.root);
  {
    std::lock_guard<std::mutex> lock(s->queue_mutex);
    s->pending.push_back(op);
    auto& st = s->stats.per_collective[static_cast<size_t>(op->info.op)];
    st.calls += 1;
    st.payload_bytes += op->info.payload_bytes;
    st.wire_bytes += cost.wire_bytes;
    if (st.algorithm != cost.algorithm) st.algorithm = cost.algorithm;
  }
  return CommHandle(s, op);
}

}  // namespace

// ---- State -----------------------------------------------------------------

namespace comm_detail {

State::~State() {
  if (watchdog.joinable()) {
    {
      std::lock_guard<std::mutex> lock(watchdog_mutex);
      stopping = true;
    }
    watchdog_cv.notify_all();
    watchdog.join();
  }
  if (failure) {
    if (health) health->linger_for_peers();
    // See Note [A failed communicator leaks its backend].
    pending.clear();
    c10d::ProcessGroup* leaked = group.release();
#ifdef ZEROTRAIN_HAS_LSAN
    __lsan_ignore_object(leaked);  // and everything it holds: leaked on purpose
#else
    (void)leaked;
#endif
  }
}

void State::throw_if_failed() {
  std::lock_guard<std::mutex> lock(queue_mutex);
  if (failure) throw *failure;
}

void State::fail(const PendingOp& op, const std::string& backend_message) {
  throw make_failure(op, backend_message);
}

CommError State::make_failure(const PendingOp& op, const std::string& backend_message) {
  // One diagnosis per communicator: a second caller (the watchdog and a waiting
  // thread may see the same failure) waits for the first and shares its result.
  std::lock_guard<std::mutex> one_at_a_time(failure_mutex);
  {
    std::lock_guard<std::mutex> lock(queue_mutex);
    if (failure) return *failure;
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - op.issued_at).count();
  Diagnosis d;
  if (health) {
    health->report_failure(op.sequence);
    d = health->diagnose(op.sequence);
  } else {
    d.text = "\n  (no store: missing ranks cannot be determined)";
  }
  std::ostringstream msg;
  msg << "zerotrain comm: " << to_string(op.info.op) << " #" << op.sequence << " ("
      << op.info.descriptor << ", " << size_text(op.info.payload_bytes) << ") failed on rank "
      << rank << " of " << world_size << " after " << std::fixed << std::setprecision(2) << elapsed
      << " s (timeout " << options.timeout.count() / 1000.0 << " s). Missing ranks:";
  if (d.missing.empty()) msg << " none identified";
  for (int r : d.missing) msg << " " << r;
  msg << d.text << "\n  backend: " << first_line(backend_message);
  CommError error(msg.str(), op.info.op, op.sequence, d.missing);
  std::lock_guard<std::mutex> lock(queue_mutex);
  if (!failure) failure = error;
  return *failure;
}

bool State::inspect(const PendingOp& op, std::chrono::milliseconds tick) {
  std::string problem;
  bool finished_ok = false;
  try {
    if (op.work->isCompleted()) {
      if (auto e = op.work->exception()) std::rethrow_exception(e);
      finished_ok = true;
    } else if (std::chrono::steady_clock::now() - op.issued_at > options.timeout + tick) {
      problem = op.done ? "waited for on the host but not finished on the device within the timeout (found by "
                          "the watchdog)"
                        : "not completed within the timeout (found by the watchdog)";
    }
  } catch (const std::exception& e) {
    problem = error_text(e);
  }
  if (!problem.empty()) {
    const CommError error = make_failure(op, problem);
    std::fprintf(stderr, "%s\n", error.what());
    std::fflush(stderr);
  }
  return finished_ok;
}

void State::retire_finished_on_device() {
  while (!on_device.empty() && on_device.front()->work->isCompleted() && !on_device.front()->work->exception())
    on_device.pop_front();
}

void State::watch() {
  // See Note [The watchdog reports what nobody waits for] and Note [Device
  // work is watched until it finishes].
  const auto tick = health ? health->interval() : std::chrono::milliseconds(1000);
  std::unique_lock<std::mutex> lock(watchdog_mutex);
  while (!watchdog_cv.wait_for(lock, tick, [this] { return stopping; })) {
    lock.unlock();
    std::vector<std::shared_ptr<PendingOp>> snapshot;
    {
      std::lock_guard<std::mutex> queue_lock(queue_mutex);
      if (!failure) {
        retire_finished_on_device();
        snapshot.assign(on_device.begin(), on_device.end());  // issued before every pending op
        snapshot.insert(snapshot.end(), pending.begin(), pending.end());
      }
    }
    // The first collective that is not finished successfully decides.
    for (const auto& op : snapshot) {
      if (op->done && op->finished_by_wait) continue;
      if (!inspect(*op, tick)) break;
    }
    lock.lock();
  }
}

void State::complete_through(uint64_t sequence) {
  RECORD_FUNCTION("zerotrain::comm::wait", std::vector<c10::IValue>());
  std::lock_guard<std::mutex> complete_lock(complete_mutex);
  for (;;) {
    std::shared_ptr<PendingOp> op;
    {
      std::lock_guard<std::mutex> lock(queue_mutex);
      if (failure) throw *failure;
      if (pending.empty() || pending.front()->sequence > sequence) return;
      op = pending.front();
    }
    try {
      op->work->wait();
    } catch (const std::exception& e) {
      fail(*op, error_text(e));
    }
    if (op->finish) {
      // Run once, even if it throws (a second run would divide twice).
      auto finish = std::move(op->finish);
      op->finish = nullptr;
      try {
        finish();
      } catch (const std::exception& e) {
        CommError error("zerotrain comm: finishing " + std::string(to_string(op->info.op)) + " #" +
                            std::to_string(op->sequence) + " (" + op->info.descriptor +
                            ") failed on rank " + std::to_string(rank) + ": " +
                            error_text(e),
                        op->info.op, op->sequence, {});
        std::lock_guard<std::mutex> lock(queue_mutex);
        if (!failure) failure = error;
        throw error;
      }
    }
    op->done = true;
    std::lock_guard<std::mutex> lock(queue_mutex);
    pending.pop_front();
    if (!op->finished_by_wait) {
      on_device.push_back(op);
      retire_finished_on_device();
    }
  }
}

}  // namespace comm_detail

// ---- CommHandle --------------------------------------------------------------

CommHandle::CommHandle(std::shared_ptr<comm_detail::State> state,
                       std::shared_ptr<comm_detail::PendingOp> op)
    : state_(std::move(state)), op_(std::move(op)) {}

void CommHandle::wait() {
  if (!op_ || op_->done) return;
  state_->complete_through(op_->sequence);
}

bool CommHandle::is_completed() const {
  if (!op_ || (op_->done && op_->finished_by_wait)) return true;
  return op_->work->isCompleted();  // Note [Device work is watched until it finishes]
}

uint64_t CommHandle::sequence() const noexcept { return op_ ? op_->sequence : 0; }

// ---- Communicator: construction ----------------------------------------------

Communicator::Communicator(std::shared_ptr<comm_detail::State> state) : state_(std::move(state)) {}

Communicator::~Communicator() = default;

int Communicator::rank() const noexcept { return state_->rank; }
int Communicator::world_size() const noexcept { return state_->world_size; }
const CommOptions& Communicator::options() const noexcept { return state_->options; }
c10::intrusive_ptr<c10d::ProcessGroup> Communicator::process_group() const { return state_->group; }

void Communicator::synchronize() { state_->complete_through(UINT64_MAX); }

CommStats Communicator::stats() const {
  std::lock_guard<std::mutex> lock(state_->queue_mutex);
  CommStats out = state_->stats;
  out.world_size = state_->world_size;
  return out;
}

void Communicator::reset_stats() {
  std::lock_guard<std::mutex> lock(state_->queue_mutex);
  state_->stats = CommStats{};
}

namespace comm_detail {

std::shared_ptr<Communicator> make_communicator(c10::intrusive_ptr<c10d::ProcessGroup> group,
                                                c10::intrusive_ptr<c10d::Store> group_store,
                                                StoreInfo where, CommOptions options,
                                                GroupFactory make_group) {
  TORCH_CHECK(group, "zerotrain comm: the process group is null");
  TORCH_CHECK(options.timeout.count() > 0, "zerotrain comm: the timeout must be positive");
  auto s = std::make_shared<State>();
  s->group = std::move(group);
  s->options = options;
  s->rank = s->group->getRank();
  s->world_size = s->group->getSize();
  s->stats.world_size = s->world_size;
  s->group_store = group_store;
  s->where = where;
  s->make_group = std::move(make_group);
  if (group_store) {
    s->store = c10::make_intrusive<c10d::PrefixStore>("comm", group_store);
    s->health = std::make_unique<Health>(s->store, std::move(where), s->rank, s->world_size,
                                         options.timeout);
    if (options.check_collectives) {
      s->check = std::make_unique<CollectiveCheck>(s->store, s->rank, s->world_size, options.timeout);
    }
  } else {
    TORCH_CHECK(!options.check_collectives,
                "zerotrain comm: check_collectives needs the group's store; pass it to adopt()");
  }
  // The thread only sees the State through `this`; ~State stops it first.
  s->watchdog = std::thread([state = s.get()] { state->watch(); });
  return std::make_shared<Communicator>(std::move(s));
}

}  // namespace comm_detail

namespace {

/// Sibling groups of an adopted group: the same kinds of backends, built anew.
comm_detail::GroupFactory adopted_group_factory(c10d::ProcessGroup& group,
                                                std::chrono::milliseconds timeout) {
  comm_detail::BackendChoice choice;
  const std::string cpu = comm_detail::backend_name(group, c10::DeviceType::CPU);
  const std::string cuda = comm_detail::backend_name(group, c10::DeviceType::CUDA);
  // Gloo serves CPU tensors on every sibling, also when the adopted group is
  // NCCL-only (torch.distributed's "nccl"): host values then stay on the host
  // (Note [Host values travel on the host], gather_values.cpp). Gloo carries
  // CUDA tensors where the adopted group has it do so (ranks sharing a GPU).
  choice.gloo = true;
  choice.gloo_cuda = cuda == "gloo";
  choice.nccl = cuda == "nccl";
  choice.nccl_default = cpu != "gloo" && cuda != "gloo";
  comm_detail::BackendSetup setup;
  setup.rank = group.getRank();
  setup.world_size = group.getSize();
  if (const char* local = std::getenv("LOCAL_RANK"); local != nullptr && *local != '\0')
    setup.local_rank = std::atoi(local);
  setup.timeout = timeout;
  return [setup, choice](const c10::intrusive_ptr<c10d::Store>& store) {
    comm_detail::BackendSetup on = setup;
    on.store = store;
    return comm_detail::make_process_group(on, choice);
  };
}

}  // namespace

namespace {

// Where an adopted group's store lives, so that a dead store host is named
// (Note [Naming the missing ranks] in health.h). torch.distributed's env://
// and tcp:// rendezvous host the TCPStore on rank 0, unless torchrun's agent
// hosts it (TORCHELASTIC_USE_AGENT_STORE=True, as torchrun sets). Found by the
// Python killed-rank harness: with rank 0 killed, survivors named nobody.
comm_detail::StoreInfo adopted_store_info(const c10::intrusive_ptr<c10d::Store>& store) {
  comm_detail::StoreInfo where;
  c10::intrusive_ptr<c10d::Store> base = store;
  if (auto* prefix = dynamic_cast<c10d::PrefixStore*>(base.get())) base = prefix->getUnderlyingNonPrefixStore();
  if (auto* tcp = dynamic_cast<c10d::TCPStore*>(base.get())) {
    where.address = tcp->getHost() + ":" + std::to_string(tcp->getPort());
    const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    where.host_rank = agent != nullptr && std::string(agent) == "True" ? -1 : 0;
  }
  return where;
}

}  // namespace

std::shared_ptr<Communicator> Communicator::adopt(c10::intrusive_ptr<c10d::ProcessGroup> group,
                                                  c10::intrusive_ptr<c10d::Store> store,
                                                  CommOptions options) {
  TORCH_CHECK(group, "zerotrain comm: adopt() needs a process group");
  c10::intrusive_ptr<c10d::Store> prefixed;
  if (store) {
    // A namespace per adoption of a group: the ranks of a group adopt it the
    // same number of times, whatever other groups each of them adopts.
    static std::mutex mutex;
    static std::map<std::string, int> adoptions;
    std::string name = group->getGroupName();
    int index = 0;
    {
      std::lock_guard<std::mutex> lock(mutex);
      index = adoptions[name]++;
    }
    prefixed = c10::make_intrusive<c10d::PrefixStore>(
        "zerotrain/adopted/" + name + "/" + std::to_string(index), store);
  }
  auto factory = adopted_group_factory(*group, options.timeout);
  return comm_detail::make_communicator(std::move(group), prefixed, adopted_store_info(store), options,
                                        std::move(factory));
}

std::shared_ptr<Communicator> Communicator::open_channel(const std::string& name) {
  // See Note [Gathers and reductions travel on separate channels].
  TORCH_CHECK(!name.empty() && name.find('/') == std::string::npos,
              "zerotrain comm: a channel name is a non-empty word without '/', got '", name, "'");
  TORCH_CHECK(state_->group_store && state_->make_group, "zerotrain comm: open_channel(\"", name,
              "\") needs the group's store; pass it to adopt()");
  state_->throw_if_failed();
  int index = 0;
  {
    std::lock_guard<std::mutex> lock(state_->issue_mutex);
    index = state_->channels_opened[name]++;
  }
  auto store = c10::make_intrusive<c10d::PrefixStore>("channel/" + name + "/" + std::to_string(index),
                                                      state_->group_store);
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  try {
    group = state_->make_group(store);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "zerotrain comm: rank ", rank(), " could not open channel '", name, "' (",
                error_text(e), "); every rank must open the same channels in the same order");
  }
  return comm_detail::make_communicator(std::move(group), store, state_->where, state_->options,
                                        state_->make_group);
}

// ---- Communicator: collectives ------------------------------------------------

CommHandle Communicator::all_reduce(const at::Tensor& tensor, ReduceOp op) {
  check_tensor("all_reduce", tensor);
  check_avg("all_reduce", op, tensor.scalar_type());
  OpInfo info{Collective::kAllReduce,
              std::string("all_reduce(") + to_string(op) + ") " + dtype_name(tensor) + "[" +
                  std::to_string(tensor.numel()) + "]",
              static_cast<int64_t>(tensor.nbytes()), 0};
  const int n = world_size();
  return issue(state_, std::move(info), tensor.device().type(),
               [&](c10d::Backend& b, BackendKind kind, std::function<void()>& finish) {
                 std::vector<at::Tensor> ts{tensor};
                 if (needs_division(op, kind)) finish = [tensor, n] { tensor.div_(n); };
                 return b.allreduce(ts, allreduce_options(op, kind, state_->options));
               });
}

CommHandle Communicator::reduce_scatter(const at::Tensor& output, const at::Tensor& input,
                                        ReduceOp op, InputUse use) {
  check_tensor("reduce_scatter output", output);
  check_tensor("reduce_scatter input", input);
  check_same_kind("reduce_scatter", output, input);
  const int n = world_size();
  TORCH_CHECK(input.numel() == output.numel() * n, "zerotrain comm: reduce_scatter: input has ",
              input.numel(), " elements, expected world_size (", n, ") x output (",
              output.numel(), ") = ", output.numel() * n);
  check_avg("reduce_scatter", op, input.scalar_type());
  OpInfo info{Collective::kReduceScatter,
              std::string("reduce_scatter(") + to_string(op) + ") " + dtype_name(input) + "[" +
                  std::to_string(input.numel()) + "]",
              static_cast<int64_t>(input.nbytes()), 0};
  return issue(state_, std::move(info), input.device().type(),
               [&](c10d::Backend& b, BackendKind kind, std::function<void()>& finish) {
                 const bool divide = needs_division(op, kind);
                 if (kind == BackendKind::kGloo) {
                   // See Note [Gloo reduce-scatter is an all-reduce]. A scratch
                   // input is reduced where it lies instead of in a copy.
                   std::vector<at::Tensor> buffer{use == InputUse::kScratch ? input.view({-1})
                                                                             : input.reshape({-1}).clone()};
                   const int64_t chunk = output.numel();
                   const int64_t offset = rank() * chunk;
                   finish = [output, buffer, chunk, offset, divide, n] {
                     output.view({-1}).copy_(buffer[0].narrow(0, offset, chunk));
                     if (divide) output.div_(n);
                   };
                   return b.allreduce(buffer, allreduce_options(op, kind, state_->options));
                 }
                 at::Tensor out = output.view({-1});
                 at::Tensor in = input.view({-1});
                 if (divide) finish = [output, n] { output.div_(n); };
                 return b._reduce_scatter_base(out, in,
                                               reduce_scatter_options(op, kind, state_->options));
               });
}

CommHandle Communicator::all_gather(const at::Tensor& output, const at::Tensor& input) {
  check_tensor("all_gather output", output);
  check_tensor("all_gather input", input);
  check_same_kind("all_gather", output, input);
  const int n = world_size();
  TORCH_CHECK(output.numel() == input.numel() * n, "zerotrain comm: all_gather: output has ",
              output.numel(), " elements, expected world_size (", n, ") x input (", input.numel(),
              ") = ", input.numel() * n);
  OpInfo info{Collective::kAllGather,
              "all_gather " + dtype_name(output) + "[" + std::to_string(output.numel()) + "]",
              static_cast<int64_t>(output.nbytes()), 0};
  return issue(state_, std::move(info), input.device().type(),
               [&](c10d::Backend& b, BackendKind, std::function<void()>&) {
                 at::Tensor out = output.view({-1});
                 at::Tensor in = input.view({-1});
                 c10d::AllgatherOptions o;
                 o.timeout = state_->options.timeout;
                 return b._allgather_base(out, in, o);
               });
}

CommHandle Communicator::broadcast(const at::Tensor& tensor, int root) {
  check_tensor("broadcast", tensor);
  TORCH_CHECK(root >= 0 && root < world_size(), "zerotrain comm: broadcast root ", root,
              " is outside [0, ", world_size(), ")");
  OpInfo info{Collective::kBroadcast,
              "broadcast(root " + std::to_string(root) + ") " + dtype_name(tensor) + "[" +
                  std::to_string(tensor.numel()) + "]",
              static_cast<int64_t>(tensor.nbytes()), root};
  return issue(state_, std::move(info), tensor.device().type(),
               [&](c10d::Backend& b, BackendKind, std::function<void()>&) {
                 std::vector<at::Tensor> ts{tensor};
                 c10d::BroadcastOptions o;
                 o.rootRank = root;
                 o.timeout = state_->options.timeout;
                 return b.broadcast(ts, o);
               });
}

CommHandle Communicator::barrier() {
  OpInfo info{Collective::kBarrier, "barrier", 0, 0};
  // The CPU backend when there is one: a barrier carries no tensor.
  const c10::DeviceType device =
      state_->group->hasBackends() && state_->group->getBackendType() == c10d::ProcessGroup::NCCL
          ? c10::DeviceType::CUDA
          : c10::DeviceType::CPU;
  return issue(state_, std::move(info), device,
               [&](c10d::Backend& b, BackendKind, std::function<void()>&) {
                 c10d::BarrierOptions o;
                 o.timeout = state_->options.timeout;
                 return b.barrier(o);
               });
}

// ---- Coalesced forms: one packed buffer, one collective -------------------------

CommHandle Communicator::all_reduce_coalesced(const std::vector<at::Tensor>& tensors,
                                              ReduceOp op) {
  const auto layout = comm_detail::PackedLayout::of("all_reduce_coalesced", tensors, 1);
  check_avg("all_reduce_coalesced", op, tensors[0].scalar_type());
  at::Tensor flat = layout.pack(tensors);
  const int n = world_size();
  OpInfo info{Collective::kAllReduce,
              std::string("all_reduce_coalesced(") + to_string(op) + ") " + layout.describe(),
              static_cast<int64_t>(flat.nbytes()), 0};
  return issue(state_, std::move(info), flat.device().type(),
               [&](c10d::Backend& b, BackendKind kind, std::function<void()>& finish) {
                 std::vector<at::Tensor> ts{flat};
                 const bool divide = needs_division(op, kind);
                 finish = [layout, flat, tensors, divide, n] {
                   if (divide) flat.div_(n);
                   layout.unpack(flat, tensors);
                 };
                 return b.allreduce(ts, allreduce_options(op, kind, state_->options));
               });
}

CommHandle Communicator::broadcast_coalesced(const std::vector<at::Tensor>& tensors, int root) {
  TORCH_CHECK(root >= 0 && root < world_size(), "zerotrain comm: broadcast_coalesced root ", root,
              " is outside [0, ", world_size(), ")");
  const auto layout = comm_detail::PackedLayout::of("broadcast_coalesced", tensors, 1);
  at::Tensor flat = layout.pack(tensors);
  OpInfo info{Collective::kBroadcast,
              "broadcast_coalesced(root " + std::to_string(root) + ") " + layout.describe(),
              static_cast<int64_t>(flat.nbytes()), root};
  return issue(state_, std::move(info), flat.device().type(),
               [&](c10d::Backend& b, BackendKind, std::function<void()>& finish) {
                 std::vector<at::Tensor> ts{flat};
                 c10d::BroadcastOptions o;
                 o.rootRank = root;
                 o.timeout = state_->options.timeout;
                 finish = [layout, flat, tensors] { layout.unpack(flat, tensors); };
                 return b.broadcast(ts, o);
               });
}

CommHandle Communicator::reduce_scatter_coalesced(const std::vector<at::Tensor>& outputs,
                                                  const std::vector<at::Tensor>& inputs,
                                                  ReduceOp op) {
  const int n = world_size();
  const auto out_layout = comm_detail::PackedLayout::of("reduce_scatter_coalesced outputs", outputs, 1);
  const auto in_layout = comm_detail::PackedLayout::of("reduce_scatter_coalesced inputs", inputs, n);
  out_layout.check_chunks_of(in_layout, "reduce_scatter_coalesced");
  check_avg("reduce_scatter_coalesced", op, inputs[0].scalar_type());
  // Rank r's chunk of every input, side by side: [n, K] with K = sum of output sizes.
  at::Tensor send = in_layout.pack_by_rank(inputs, n);
  OpInfo info{Collective::kReduceScatter,
              std::string("reduce_scatter_coalesced(") + to_string(op) + ") " + in_layout.describe(),
              static_cast<int64_t>(send.nbytes()), 0};
  return issue(state_, std::move(info), send.device().type(),
               [&](c10d::Backend& b, BackendKind kind, std::function<void()>& finish) {
                 const bool divide = needs_division(op, kind);
                 if (kind == BackendKind::kGloo) {
                   // See Note [Gloo reduce-scatter is an all-reduce]; `send` is
                   // already a private packed copy, reduced in place.
                   std::vector<at::Tensor> buffer{send};
                   const int64_t per_rank = out_layout.total();
                   const int64_t offset = rank() * per_rank;
                   finish = [out_layout, send, outputs, per_rank, offset, divide, n] {
                     at::Tensor mine = send.narrow(0, offset, per_rank);
                     if (divide) mine.div_(n);
                     out_layout.unpack(mine, outputs);
                   };
                   return b.allreduce(buffer, allreduce_options(op, kind, state_->options));
                 }
                 at::Tensor recv = at::empty({out_layout.total()}, send.options());
                 finish = [out_layout, recv, outputs, divide, n] {
                   if (divide) recv.div_(n);
                   out_layout.unpack(recv, outputs);
                 };
                 return b._reduce_scatter_base(recv, send,
                                               reduce_scatter_options(op, kind, state_->options));
               });
}

CommHandle Communicator::all_gather_coalesced(const std::vector<at::Tensor>& outputs,
                                              const std::vector<at::Tensor>& inputs) {
  const int n = world_size();
  const auto in_layout = comm_detail::PackedLayout::of("all_gather_coalesced inputs", inputs, 1);
  const auto out_layout = comm_detail::PackedLayout::of("all_gather_coalesced outputs", outputs, n);
  in_layout.check_chunks_of(out_layout, "all_gather_coalesced");
  at::Tensor send = in_layout.pack(inputs);
  at::Tensor recv = at::empty({n * in_layout.total()}, send.options());
  OpInfo info{Collective::kAllGather, "all_gather_coalesced " + out_layout.describe(),
              static_cast<int64_t>(recv.nbytes()), 0};
  return issue(state_, std::move(info), send.device().type(),
               [&](c10d::Backend& b, BackendKind, std::function<void()>& finish) {
                 c10d::AllgatherOptions o;
                 o.timeout = state_->options.timeout;
                 finish = [out_layout, recv, outputs, n] {
                   out_layout.unpack_by_rank(recv, outputs, n);
                 };
                 return b._allgather_base(recv, send, o);
               });
}

}  // namespace zerotrain
