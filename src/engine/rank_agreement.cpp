// Note [Every rank starts from the same model and config] (rank_agreement.h).

#include "engine/rank_agreement.h"

#include "checkpoint/checksum.h"
#include "comm/gather_values.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <optional>
#include <sstream>

namespace zerotrain::detail {

namespace {

using comm_detail::all_gather_text;
using comm_detail::all_gather_values;

int64_t digest_of(const void* data, size_t bytes) {
  ckpt::Checksum c;
  c.update(data, bytes);
  const uint64_t d = c.digest();
  int64_t out = 0;
  std::memcpy(&out, &d, sizeof out);
  return out;
}

int64_t digest_of(const std::string& s) { return digest_of(s.data(), s.size()); }

std::string describe_structure(const zero::NamedParameter& p) {
  std::ostringstream s;
  s << p.name << ' ' << p.tensor.sizes() << ' ' << p.tensor.scalar_type();
  return s.str();
}

// The bytes of the values, read on the host (init time, once).
int64_t value_digest(const at::Tensor& t) {
  const at::Tensor host = t.device().is_cpu() ? t.contiguous() : t.to(at::kCPU).contiguous();
  return digest_of(host.data_ptr(), host.nbytes());
}

// The first JSON path at which `a` and `b` differ ("" when equal), and the two values there.
struct Difference {
  std::string path;
  std::string a, b;
};
std::optional<Difference> first_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& at) {
  if (a.is_object() && b.is_object()) {
    std::vector<std::string> keys;
    for (const auto& item : a.items()) keys.push_back(item.key());
    for (const auto& item : b.items())
      if (!a.contains(item.key())) keys.push_back(item.key());
    for (const std::string& k : keys) {
      const std::string path = at.empty() ? k : at + "." + k;
      if (!a.contains(k)) return Difference{path, "(absent)", b.at(k).dump()};
      if (!b.contains(k)) return Difference{path, a.at(k).dump(), "(absent)"};
      if (auto d = first_difference(a.at(k), b.at(k), path)) return d;
    }
    return std::nullopt;
  }
  if (a == b) return std::nullopt;
  return Difference{at, a.dump(), b.dump()};
}

[[noreturn]] void config_mismatch(Communicator& comm, c10::Device device, const Config& config,
                                  const std::string& text, const std::vector<int64_t>& digests) {
  const std::vector<std::string> texts = all_gather_text(comm, device, text);
  for (size_t r = 1; r < texts.size(); ++r) {
    if (digests[r] == digests[0]) continue;
    const auto d = first_difference(nlohmann::json::parse(texts[0]), nlohmann::json::parse(texts[r]), "");
    TORCH_INTERNAL_ASSERT(d, "config digests differ but the texts are equal");
    throw ConfigError(config.source(),
                      {{d->path, "differs between ranks: rank 0 has " + d->a + ", rank " + std::to_string(r) +
                                     " has " + d->b + " (every rank must run with the same config)"}});
  }
  TORCH_INTERNAL_ASSERT(false, "no rank's config differs from rank 0's");
}

// Digests of each parameter on every rank; the first index where a rank
// differs from rank 0, and that rank.
std::pair<size_t, int> first_differing(Communicator& comm, c10::Device device, const std::vector<int64_t>& mine) {
  const std::vector<int64_t> all = all_gather_values(comm, device, mine);
  const size_t n = mine.size();
  for (size_t p = 0; p < n; ++p)
    for (int r = 1; r < comm.world_size(); ++r)
      if (all[static_cast<size_t>(r) * n + p] != all[p]) return {p, r};
  TORCH_INTERNAL_ASSERT(false, "the model digests differ but no parameter does");
}

}  // namespace

std::string check_ranks_agree(Communicator& comm, c10::Device device, const Config& config,
                              const zero::ModelSpec& spec, bool values_sharded) {
  if (comm.world_size() == 1) return {};
  const std::string config_text = config.to_json().dump();
  std::vector<int64_t> structure, values;
  for (const zero::NamedParameter& p : spec.params) {
    structure.push_back(digest_of(describe_structure(p)));
    if (!values_sharded) values.push_back(value_digest(p.tensor));
  }
  const std::vector<int64_t> summary{digest_of(config_text), static_cast<int64_t>(spec.params.size()),
                                     digest_of(structure.data(), structure.size() * sizeof(int64_t)),
                                     digest_of(values.data(), values.size() * sizeof(int64_t))};
  const std::vector<int64_t> all = all_gather_values(comm, device, summary);
  const size_t k = summary.size();
  auto column = [&](size_t i) {
    std::vector<int64_t> c;
    for (int r = 0; r < comm.world_size(); ++r) c.push_back(all[static_cast<size_t>(r) * k + i]);
    return c;
  };
  auto differs = [](const std::vector<int64_t>& c) {
    for (int64_t v : c)
      if (v != c.front()) return true;
    return false;
  };
  // The same decisions on every rank: each sees every rank's summary.
  if (differs(column(0))) config_mismatch(comm, device, config, config_text, column(0));
  const std::vector<int64_t> counts = column(1);
  for (int r = 1; r < comm.world_size(); ++r)
    TORCH_CHECK(counts[static_cast<size_t>(r)] == counts[0], "zerotrain::initialize: the model differs between "
                "ranks: rank 0 has ", counts[0], " trainable parameters and rank ", r, " has ",
                counts[static_cast<size_t>(r)], " (every rank must build the same model)");
  if (differs(column(2))) {
    const auto [p, r] = first_differing(comm, device, structure);
    TORCH_CHECK(false, "zerotrain::initialize: the model differs between ranks: trainable parameter #", p,
                " is '", describe_structure(spec.params[p]), "' on rank ", comm.rank(), " and differs on rank ", r,
                " from rank 0's (name, shape or dtype; every rank must build the same model)");
  }
  if (!differs(column(3))) return {};
  const auto [p, r] = first_differing(comm, device, values);
  return "parameter '" + spec.params[p].name + "' has different values on rank " + std::to_string(r) +
         " and rank 0 at initialize() (checked by a checksum of every parameter); every rank trains from rank "
         "0's values, as in DeepSpeed. Seed every rank alike to silence this (an unseeded rank often shuffles "
         "its data differently too)";
}

}  // namespace zerotrain::detail
