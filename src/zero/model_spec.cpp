// See Note [The unit is a module subtree] in model_spec.h.

#include "zero/model_spec.h"

#include <c10/util/Exception.h>

namespace zerotrain::zero {

namespace {

// For each parameter, the index of the part holding it; every parameter in
// exactly one part.
template <typename Part>
std::vector<int> partition_of(const ModelSpec& m, const std::vector<Part>& parts, const char* what) {
  std::vector<int> owner(m.params.size(), -1);
  for (size_t k = 0; k < parts.size(); ++k)
    for (int p : parts[k].params) {
      TORCH_CHECK(p >= 0 && p < static_cast<int>(m.params.size()), "zerotrain: ", what, " ", k,
                  " names parameter index ", p, " of ", m.params.size());
      TORCH_CHECK(owner[static_cast<size_t>(p)] < 0, "zerotrain: parameter '",
                  m.params[static_cast<size_t>(p)].name, "' is in ", what, "s ",
                  owner[static_cast<size_t>(p)], " and ", k, "; a parameter belongs to one ", what);
      owner[static_cast<size_t>(p)] = static_cast<int>(k);
    }
  for (size_t p = 0; p < owner.size(); ++p)
    TORCH_CHECK(owner[p] >= 0, "zerotrain: parameter '", m.params[p].name, "' is in no ", what);
  return owner;
}

}  // namespace

std::vector<int> ModelSpec::unit_of_param() const { return partition_of(*this, units, "unit"); }
std::vector<int> ModelSpec::group_of_param() const {
  return partition_of(*this, groups, "parameter group");
}

void ModelSpec::validate() const {
  TORCH_CHECK(!params.empty(), "zerotrain: the model has no parameter that requires grad");
  const at::Tensor& first = params.front().tensor;
  for (const NamedParameter& p : params) {
    TORCH_CHECK(p.tensor.defined() && p.tensor.requires_grad(), "zerotrain: parameter '", p.name,
                "' is not a trainable tensor");
    TORCH_CHECK(p.tensor.scalar_type() == first.scalar_type() && p.tensor.device() == first.device(),
                "zerotrain: parameter '", p.name, "' is ", p.tensor.scalar_type(), " on ",
                p.tensor.device(), "; every trained parameter must be ", first.scalar_type(), " on ",
                first.device());
  }
  for (const UnitSpec& u : units)
    TORCH_CHECK(!u.params.empty(), "zerotrain: unit '", display_name(u), "' has no parameters");
  for (size_t g = 0; g < groups.size(); ++g)
    TORCH_CHECK(!groups[g].params.empty(), "zerotrain: parameter group ", g, " is empty");
  unit_of_param();
  group_of_param();
}

std::string display_name(const UnitSpec& unit) { return unit.name.empty() ? "root" : unit.name; }

}  // namespace zerotrain::zero
