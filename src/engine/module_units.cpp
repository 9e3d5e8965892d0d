// The wrap policies (include/zerotrain/units.h) on a module tree: a LibTorch
// module's, or one a front end describes (zerotrain/model_description.h).
// See Note [The unit is a module subtree] in src/zero/model_spec.h.

#include "engine/module_units.h"

#include <c10/util/Exception.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <set>
#include <sstream>
#include <unordered_map>

namespace zerotrain::detail {

namespace {

struct Node {
  std::string path;  // "" for the root
  std::vector<std::string> type_names;  // the names a WrapPolicy::by_module_type entry may use
  int parent = -1;
  int depth = 0;
  std::vector<int> children;
  std::vector<int> params;  // model parameters whose owner this node is
  UnitBoundary* boundary = nullptr;  // a LibTorch zerotrain::Unit's, when there is one
  bool marked = false;               // a unit under every policy
  bool explicit_unit = false;        // marked, or of a listed type
  bool unit_root = false;      // explicit or chosen by size
  int64_t own_numel = 0;
  int64_t free_numel = 0;  // in the subtree, outside explicit units
};

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// "gpt::BlockImpl" answers to "gpt::BlockImpl", "BlockImpl", "gpt::Block" and "Block".
std::vector<std::string> type_names(const torch::nn::Module& m) {
  const std::string full = m.name();
  const auto colon = full.rfind("::");
  const std::string bare = colon == std::string::npos ? full : full.substr(colon + 2);
  std::vector<std::string> out{full, bare};
  for (const std::string& s : {full, bare})
    if (s.size() > 4 && s.compare(s.size() - 4, 4, "Impl") == 0) out.push_back(s.substr(0, s.size() - 4));
  return out;
}

// The module tree, in pre-order, and the trainable parameters (each tensor
// once, under its first name) with the nodes registering each.
class Walker {
 public:
  std::vector<Node> nodes;
  std::vector<zero::NamedParameter> params;
  std::vector<std::vector<int>> registrants;  // per parameter: the nodes registering it

  int add_node(std::string path, int parent, std::vector<std::string> types, bool marked) {
    const int self = static_cast<int>(nodes.size());
    Node n;
    n.path = std::move(path);
    n.type_names = std::move(types);
    n.parent = parent;
    n.depth = parent < 0 ? 0 : nodes[static_cast<size_t>(parent)].depth + 1;
    n.marked = marked;
    nodes.push_back(std::move(n));
    if (parent >= 0) nodes[static_cast<size_t>(parent)].children.push_back(self);
    return self;
  }

  void add_param(int node, const std::string& name, const at::Tensor& t) {
    if (!t.defined() || !t.requires_grad()) return;
    auto [it, fresh] = index_.emplace(t.unsafeGetTensorImpl(), static_cast<int>(params.size()));
    if (fresh) {
      params.push_back({join(nodes[static_cast<size_t>(node)].path, name), t, at::Tensor()});
      registrants.emplace_back();
    }
    registrants[static_cast<size_t>(it->second)].push_back(node);
  }

  void visit(torch::nn::Module& m, const std::string& path, int parent) {
    auto* boundary = dynamic_cast<UnitBoundary*>(&m);
    const int self = add_node(path, parent, type_names(m), boundary != nullptr);
    nodes[static_cast<size_t>(self)].boundary = boundary;
    for (const auto& item : m.named_parameters(/*recurse=*/false)) add_param(self, item.key(), item.value());
    for (const auto& child : m.named_children()) visit(*child.value(), join(path, child.key()), self);
  }

  int common_ancestor(int a, int b) const {
    while (nodes[static_cast<size_t>(a)].depth > nodes[static_cast<size_t>(b)].depth) a = nodes[static_cast<size_t>(a)].parent;
    while (nodes[static_cast<size_t>(b)].depth > nodes[static_cast<size_t>(a)].depth) b = nodes[static_cast<size_t>(b)].parent;
    while (a != b) {
      a = nodes[static_cast<size_t>(a)].parent;
      b = nodes[static_cast<size_t>(b)].parent;
    }
    return a;
  }

 private:
  std::unordered_map<const void*, int> index_;
};

void mark_types(std::vector<Node>& nodes, const std::vector<std::string>& wanted) {
  std::set<std::string> found, present;
  for (size_t i = 1; i < nodes.size(); ++i) {
    const std::vector<std::string>& names = nodes[i].type_names;
    if (names.empty()) continue;
    present.insert(names.front());
    for (const std::string& w : wanted)
      if (std::find(names.begin(), names.end(), w) != names.end()) {
        nodes[i].explicit_unit = true;
        found.insert(w);
      }
  }
  for (const std::string& w : wanted) {
    if (found.count(w)) continue;
    std::ostringstream s;
    for (const std::string& p : present) s << (s.tellp() > 0 ? ", " : "") << p;
    TORCH_CHECK(false, "zerotrain: WrapPolicy::by_module_type: no module of the model is a '", w,
                "'; the model's module types are: ", s.str());
  }
}

// The default policy's bound is an eighth of the model, but never below this
// many elements (unless reduce_bucket_size is): a collective of a few
// kilobytes costs its latency whatever its size (about a millisecond on Gloo,
// tens of microseconds on NCCL), and a model of under 2^20 parameters holds
// at most 4 MB of fp32 gradients, so it stays one unit. Measured on
// examples/train_mnist (235K parameters, 2 ranks on the 2-core VM): an epoch
// took 22 s as one unit and 37.5 s as three (three alternating runs each).
constexpr int64_t kDefaultUnitFloor = int64_t{1} << 20;

// Size policy over the parameters outside explicit units: a subtree of at
// most `bound` elements becomes a unit; one under bound / 8 stays with its
// parent; a larger one is split among its children, and what they leave
// (with its own parameters) becomes a unit if it reaches bound / 8.
class SizePolicy {
 public:
  SizePolicy(std::vector<Node>& nodes, int64_t bound) : nodes_(nodes), bound_(bound), floor_(std::max<int64_t>(1, bound / 8)) {}

  int64_t free_numel(int n) {
    Node& node = nodes_[static_cast<size_t>(n)];
    node.free_numel = node.own_numel;
    for (int c : node.children)
      if (!nodes_[static_cast<size_t>(c)].explicit_unit) node.free_numel += free_numel(c);
    return node.free_numel;
  }

  /// The elements `n`'s subtree leaves to the enclosing unit. A root within
  /// the bound is one unit.
  int64_t select(int n, bool is_root) {
    Node& node = nodes_[static_cast<size_t>(n)];
    const int64_t f = node.free_numel;
    if (is_root && f <= bound_) return f;
    if (!is_root && f >= floor_ && f <= bound_) {
      node.unit_root = true;
      return 0;
    }
    if (!is_root && f < floor_) return f;
    int64_t left = node.own_numel;
    for (int c : node.children)
      if (!nodes_[static_cast<size_t>(c)].explicit_unit) left += select(c, false);
    if (!is_root && left >= floor_) {
      node.unit_root = true;
      return 0;
    }
    return left;
  }

 private:
  std::vector<Node>& nodes_;
  int64_t bound_;
  int64_t floor_;
};

}  // namespace

namespace {

// Note [The unit is a module subtree], on either front end's tree.
ModuleUnits cut(Walker& w, const WrapPolicy& policy, int64_t reduce_bucket_size, bool every_unit_triggered) {
  std::vector<Node>& nodes = w.nodes;
  TORCH_CHECK(!w.params.empty(), "zerotrain::initialize: the model has no parameter that requires grad");

  int64_t total = 0;
  for (size_t p = 0; p < w.params.size(); ++p) {
    int owner = w.registrants[p].front();
    for (int r : w.registrants[p]) owner = w.common_ancestor(owner, r);
    Node& n = nodes[static_cast<size_t>(owner)];
    n.params.push_back(static_cast<int>(p));
    n.own_numel += w.params[p].tensor.numel();
    total += w.params[p].tensor.numel();
  }
  for (size_t i = 1; i < nodes.size(); ++i) nodes[i].explicit_unit = nodes[i].marked;
  if (policy.kind == WrapPolicy::Kind::kModuleTypes) {
    TORCH_CHECK(!policy.module_types.empty(), "zerotrain: WrapPolicy::by_module_type needs at least one type name");
    mark_types(nodes, policy.module_types);
  }
  for (Node& n : nodes) n.unit_root = n.explicit_unit;
  if (policy.kind == WrapPolicy::Kind::kDefault || policy.kind == WrapPolicy::Kind::kSize) {
    int64_t bound = policy.max_unit_numel;
    if (policy.kind == WrapPolicy::Kind::kDefault) {
      TORCH_CHECK(reduce_bucket_size >= 1, "zerotrain: zero_optimization.reduce_bucket_size must be at least 1, got ",
                  reduce_bucket_size);
      bound = std::min(reduce_bucket_size, std::max(kDefaultUnitFloor, (total + 7) / 8));
    }
    TORCH_CHECK(bound >= 1, "zerotrain: WrapPolicy::by_size needs a bound of at least 1 element, got ", bound);
    SizePolicy size(nodes, bound);
    size.free_numel(0);
    size.select(0, /*is_root=*/true);
  }

  // Each parameter goes to the nearest unit root above its owner, else the root unit.
  // Nodes are in pre-order: a parent's unit is known before its children's.
  std::vector<int> unit_of_node(nodes.size(), 0);
  std::vector<int> roots{0};  // node 0 holds the root unit
  for (size_t i = 1; i < nodes.size(); ++i) {
    if (nodes[i].unit_root) {
      unit_of_node[i] = static_cast<int>(roots.size());
      roots.push_back(static_cast<int>(i));
    } else {
      unit_of_node[i] = unit_of_node[static_cast<size_t>(nodes[i].parent)];
    }
  }
  std::vector<std::vector<int>> members(roots.size());
  for (size_t i = 0; i < nodes.size(); ++i)
    for (int p : nodes[i].params) members[static_cast<size_t>(unit_of_node[i])].push_back(p);

  // Units in the order of their first parameter; empty ones (frozen subtrees) dropped.
  std::vector<int> order;
  for (size_t k = 0; k < members.size(); ++k) {
    if (members[k].empty()) continue;
    std::sort(members[k].begin(), members[k].end());
    order.push_back(static_cast<int>(k));
  }
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return members[static_cast<size_t>(a)].front() < members[static_cast<size_t>(b)].front();
  });
  ModuleUnits out;
  out.spec.params = std::move(w.params);
  for (int k : order) {
    const Node& n = nodes[static_cast<size_t>(roots[static_cast<size_t>(k)])];
    zero::UnitSpec u;
    u.name = k == 0 ? "" : n.path;
    u.params = members[static_cast<size_t>(k)];
    u.has_triggers = every_unit_triggered || (k != 0 && n.boundary != nullptr);
    if (n.boundary != nullptr && k != 0) out.boundaries.emplace_back(n.boundary, static_cast<int>(out.spec.units.size()));
    out.spec.units.push_back(std::move(u));
  }
  return out;
}

}  // namespace

ModuleUnits cut_into_units(torch::nn::Module& root, const WrapPolicy& policy, int64_t reduce_bucket_size) {
  Walker w;
  w.visit(root, "", -1);
  return cut(w, policy, reduce_bucket_size, /*every_unit_triggered=*/false);
}

ModuleUnits cut_into_units(const std::vector<ModuleNode>& modules, const WrapPolicy& policy,
                           int64_t reduce_bucket_size) {
  TORCH_CHECK(!modules.empty() && modules.front().parent == -1 && modules.front().path.empty(),
              "zerotrain::initialize: a model description starts with its root module (path \"\", parent -1)");
  Walker w;
  for (size_t i = 0; i < modules.size(); ++i) {
    const ModuleNode& m = modules[i];
    if (i > 0)
      TORCH_CHECK(m.parent >= 0 && static_cast<size_t>(m.parent) < i, "zerotrain::initialize: module '", m.path,
                  "' names parent ", m.parent, "; modules must be in pre-order, each after its parent");
    const int self = w.add_node(m.path, m.parent, m.type_names, m.marked);
    for (const auto& [name, t] : m.params) w.add_param(self, name, t);
  }
  return cut(w, policy, reduce_bucket_size, /*every_unit_triggered=*/true);
}

void attach_units(const ModuleUnits& units, const std::weak_ptr<UnitTriggers>& triggers,
                  const checkpointing::CheckpointOptions& options, bool recompute_all) {
  for (const auto& [boundary, unit] : units.boundaries) boundary->attach(triggers, unit, options, recompute_all);
}

}  // namespace zerotrain::detail
