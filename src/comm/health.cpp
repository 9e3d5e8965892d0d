// See Note [Naming the missing ranks] in health.h.

#include "comm/health.h"

#include "comm/error_text.h"

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <algorithm>
#include <sstream>

namespace zerotrain::comm_detail {

namespace {

std::string key_of(int rank) { return "health/" + std::to_string(rank); }

std::chrono::milliseconds interval_for(std::chrono::milliseconds timeout) {
  // A tenth of the timeout, between 100 ms and 1 s: the diagnosis then costs
  // well under the 5 s margin the failure contract allows beyond the timeout.
  return std::clamp(timeout / 10, std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
}

std::string ms_text(std::chrono::milliseconds d) {
  std::ostringstream s;
  s.precision(2);
  s << std::fixed << d.count() / 1000.0 << " s";
  return s.str();
}

}  // namespace

Health::Health(const c10::intrusive_ptr<c10d::Store>& store, StoreInfo where, int rank,
               int world_size, std::chrono::milliseconds timeout)
    : store_(store->clone()),
      where_(std::move(where)),
      rank_(rank),
      world_size_(world_size),
      timeout_(timeout),
      interval_(interval_for(timeout)) {
  store_->setTimeout(std::max(std::chrono::milliseconds(2000), 2 * interval_));
  if (where_.address.empty()) where_.address = "(the adopted group's store)";
  publish();  // the record exists before the first collective
  thread_ = std::thread([this] { run(); });
}

Health::~Health() {
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
}

void Health::note_issued(uint64_t sequence) { issued_.store(sequence, std::memory_order_relaxed); }

void Health::publish() {
  std::lock_guard<std::mutex> lock(publish_mutex_);
  ++beat_;
  const std::string value = std::to_string(beat_) + " " + std::to_string(issued_.load()) + " " +
                            std::to_string(failed_.load()) + " " +
                            (diagnosed_.load() ? "1" : "0");
  store_->set(key_of(rank_), std::vector<uint8_t>(value.begin(), value.end()));
}

void Health::run() {
  std::unique_lock<std::mutex> lock(stop_mutex_);
  while (!stop_cv_.wait_for(lock, interval_, [this] { return stop_; })) {
    lock.unlock();
    try {
      publish();
    } catch (const std::exception&) {
      // The store is gone (its host exited). Peers diagnose that from their
      // side; this rank learns of it from its next collective.
    }
    lock.lock();
  }
}

std::vector<Health::Record> Health::read_all() {
  std::vector<std::string> keys;
  for (int r = 0; r < world_size_; ++r) keys.push_back(key_of(r));
  // One round trip when every record exists (the usual case), else one per rank.
  std::vector<std::vector<uint8_t>> values(world_size_);
  if (store_->check(keys)) {
    values = store_->multiGet(keys);
  } else {
    for (int r = 0; r < world_size_; ++r) {
      if (store_->check({keys[r]})) values[r] = store_->get(keys[r]);
    }
  }
  std::vector<Record> out(world_size_);
  for (int r = 0; r < world_size_; ++r) {
    if (values[r].empty()) continue;
    std::istringstream in(std::string(values[r].begin(), values[r].end()));
    int diagnosed = 0;
    Record& rec = out[r];
    in >> rec.beat >> rec.issued >> rec.failed >> diagnosed;
    rec.present = !in.fail();
    rec.diagnosed = diagnosed != 0;
  }
  return out;
}

void Health::report_failure(uint64_t sequence) {
  uint64_t expected = 0;
  failed_.compare_exchange_strong(expected, sequence);
  try {
    publish();
  } catch (const std::exception&) {
  }
}

void Health::mark_diagnosed() {
  diagnosed_.store(true);
  try {
    publish();
  } catch (const std::exception&) {
  }
}

Diagnosis Health::diagnose(uint64_t sequence) {
  std::lock_guard<std::mutex> lock(diagnose_mutex_);
  Diagnosis d;
  std::ostringstream text;
  try {
    const auto first = read_all();
    const auto wait = 3 * interval_;
    std::this_thread::sleep_for(wait);
    const auto second = read_all();
    std::vector<int> behind;  // alive, listed after the ranks that are gone
    for (int r = 0; r < world_size_; ++r) {
      if (r == rank_) continue;
      const Record& a = first[r];
      const Record& b = second[r];
      if (!b.present) {
        d.missing.push_back(r);
        text << "\n  rank " << r << ": has no health record (it never joined)";
      } else if (b.failed != 0) {
        text << "\n  rank " << r << ": failed too, in collective #" << b.failed;
      } else if (a.present && a.beat == b.beat) {
        d.missing.push_back(r);
        text << "\n  rank " << r << ": no heartbeat for " << ms_text(wait)
             << " (the process exited, was killed or is stopped); its last heartbeat reported #"
             << b.issued << " issued";
      } else if (b.issued < sequence) {
        behind.push_back(r);
        text << "\n  rank " << r << ": alive but has not issued collective #" << sequence
             << " (its last was #" << b.issued << ")";
      }
    }
    d.missing.insert(d.missing.end(), behind.begin(), behind.end());
  } catch (const std::exception& e) {
    const std::string why = error_text(e);
    if (where_.host_rank >= 0 && where_.host_rank != rank_) {
      d.missing.push_back(where_.host_rank);
      text << "\n  rank " << where_.host_rank << ": the rendezvous store it hosts at "
           << where_.address << " does not answer, so it has most likely exited (" << why
           << ")";
    } else {
      text << "\n  the rendezvous store at " << where_.address
           << " does not answer, so the missing ranks are unknown (" << why << ")";
    }
  }
  d.text = text.str();
  missing_at_failure_ = d.missing;
  mark_diagnosed();
  return d;
}

void Health::linger_for_peers() {
  if (where_.host_rank != rank_ || failed_.load() == 0) return;
  // Peers may detect the failure up to a full timeout after us, then diagnose.
  const auto deadline = std::chrono::steady_clock::now() + timeout_ + 4 * interval_;
  while (std::chrono::steady_clock::now() < deadline) {
    bool all_done = true;
    try {
      const auto records = read_all();
      for (int r = 0; r < world_size_; ++r) {
        if (r == rank_ || records[r].diagnosed) continue;
        if (std::find(missing_at_failure_.begin(), missing_at_failure_.end(), r) !=
            missing_at_failure_.end()) {
          continue;
        }
        all_done = false;
      }
    } catch (const std::exception&) {
      return;
    }
    if (all_done) return;
    std::this_thread::sleep_for(interval_);
  }
}

}  // namespace zerotrain::comm_detail
