// The engine for Python: a communicator over torch.distributed's group, a
// described model (zerotrain/model_description.h) built by zerotrain/engine.py
// from an nn.Module, and the Engine's methods. Every call that can wait on a
// collective or run autograd releases the GIL, so that autograd's threads and
// Python hooks can take it. A CommError becomes zerotrain.CommError (a
// RuntimeError carrying `missing_ranks`, `op` and `sequence`).

#include "bindings.h"

#include <zerotrain/activation_checkpointing.h>
#include <zerotrain/comm.h>
#include <zerotrain/config.h>
#include <zerotrain/engine.h>
#include <zerotrain/model_description.h>
#include <zerotrain/units.h>

#include <nlohmann/json.hpp>
#include <pybind11/functional.h>
#include <pybind11/stl.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/utils/pybind.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace py = pybind11;

namespace zerotrain::python {
namespace {

// A scope object (no_sync, gathered parameters) that Python ends with close().
template <typename Guard>
struct Scope {
  std::optional<Guard> guard;
  void close() {
    if (!guard) return;
    py::gil_scoped_release release;
    Guard g = std::move(*guard);
    guard.reset();
    if constexpr (std::is_same_v<Guard, GatheredParameters>) g.close();
  }
};

WrapPolicy wrap_policy(const std::string& kind, const std::vector<std::string>& types, int64_t max_numel) {
  if (kind == "default") return WrapPolicy{};
  if (kind == "module_types") return WrapPolicy::by_module_type(types);
  if (kind == "size") return WrapPolicy::by_size(max_numel);
  if (kind == "marked_only") return WrapPolicy::marked_only();
  throw py::value_error("zerotrain: unknown wrap policy '" + kind + "'");
}

// A Python callable taking a line, callable from any thread.
std::function<void(const std::string&)> with_gil(py::function f) {
  return [f = std::move(f)](const std::string& line) {
    py::gil_scoped_acquire gil;
    f(line);
  };
}

// One entry per module: (path, type names, parent, [(name, tensor)], marked).
using ModuleTuple = std::tuple<std::string, std::vector<std::string>, int,
                               std::vector<std::pair<std::string, at::Tensor>>, bool>;
// One entry per parameter group: (tensors, lr or None, weight_decay or None).
using GroupTuple = std::tuple<std::vector<at::Tensor>, std::optional<double>, std::optional<double>>;

std::shared_ptr<Engine> make_engine(const std::vector<ModuleTuple>& modules, py::function train,
                                    py::function buffers, const std::string& config_text, const std::string& source, bool is_path,
                                    std::shared_ptr<Communicator> comm, const std::vector<GroupTuple>& groups,
                                    const std::string& wrap_kind, const std::vector<std::string>& wrap_types,
                                    int64_t wrap_numel, py::object observer, py::function warn,
                                    py::function report) {
  ModelDescription d;
  for (const auto& [path, types, parent, params, marked] : modules) d.modules.push_back({path, types, parent, params, marked});
  // The functions run on whichever thread calls them (pybind's wrappers take the GIL).
  d.train = [train](bool on) {
    py::gil_scoped_acquire gil;
    train(on);
  };
  d.buffers = [buffers]() {
    py::gil_scoped_acquire gil;
    return py::cast<std::vector<std::pair<std::string, at::Tensor>>>(buffers());
  };
  InitOptions o;
  o.communicator = std::move(comm);
  o.warn = with_gil(std::move(warn));
  o.progress.sink = with_gil(std::move(report));
  for (const auto& [params, lr, wd] : groups) o.param_groups.push_back({params, lr, wd});
  o.wrap_policy = wrap_policy(wrap_kind, wrap_types, wrap_numel);
  if (!observer.is_none()) {
    o.observer = [observer](const EngineEvent& e) {
      py::gil_scoped_acquire gil;
      observer(to_string(e.kind), e.unit, e.param);
    };
  }
  ResolveOptions ro;
  ro.world_size = o.communicator->world_size();
  const Config config = is_path ? Config::from_file(config_text, ro) : Config::from_string(config_text, ro, source);
  py::gil_scoped_release release;  // initialize broadcasts and gathers
  return std::make_shared<Engine>(initialize(std::move(d), config, std::move(o)));
}

py::dict memory_dict(const MemoryReport& m) {
  py::dict d;
  d["parameters"] = m.parameters;
  d["gradients"] = m.gradients;
  d["master_weights"] = m.master_weights;
  d["optimizer_states"] = m.optimizer_states;
  d["communication_buffers"] = m.communication_buffers;
  d["offload_buffers"] = m.offload_buffers;
  d["host"] = m.host;
  d["parameter_shard"] = m.parameter_shard;
  d["gathered_parameters"] = m.gathered_parameters;
  d["peak_gathered_parameters"] = m.peak_gathered_parameters;
  d["total"] = m.total();
  return d;
}

py::dict comm_dict(const CommStats& s) {
  py::dict d;
  for (int c = 0; c < kNumCollectives; ++c) {
    const CollectiveStats& cs = s.per_collective[static_cast<size_t>(c)];
    if (cs.calls == 0) continue;
    py::dict one;
    one["calls"] = cs.calls;
    one["payload_bytes"] = cs.payload_bytes;
    one["wire_bytes"] = cs.wire_bytes;
    d[to_string(static_cast<Collective>(c))] = one;
  }
  return d;
}

py::dict timers_dict(const PhaseTimes& t) {
  py::dict d;
  for (int p = 0; p < kNumPhases; ++p) {
    py::dict one;
    one["total_ms"] = t.total_ms[static_cast<size_t>(p)];
    one["count"] = t.count[static_cast<size_t>(p)];
    d[to_string(static_cast<Phase>(p))] = one;
  }
  return d;
}

py::list units_list(const Engine& e) {
  py::list out;
  for (const UnitInfo& u : e.units()) {
    py::dict d;
    d["name"] = u.name;
    d["module_path"] = u.module_path;
    d["params"] = u.params;
    d["numel"] = u.numel;
    d["padded_numel"] = u.padded_numel;
    out.append(d);
  }
  return out;
}

}  // namespace

void bind_engine(py::module_& m) {
  static py::handle comm_error = PyErr_NewExceptionWithDoc(
      "zerotrain._C.CommError",
      "A collective failed or timed out: `missing_ranks` names the ranks that did not take part, `op` the "
      "collective and `sequence` its position in the communicator's order.",
      PyExc_RuntimeError, nullptr);
  m.attr("CommError") = comm_error;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const CommError& e) {
      py::object err = py::reinterpret_borrow<py::object>(comm_error)(e.what());
      err.attr("missing_ranks") = py::cast(e.missing_ranks());
      err.attr("op") = to_string(e.op());
      err.attr("sequence") = e.sequence();
      PyErr_SetObject(comm_error.ptr(), err.ptr());
    }
  });

  py::class_<Communicator, std::shared_ptr<Communicator>>(m, "Communicator")
      .def_static(
          "adopt",
          [](c10::intrusive_ptr<c10d::ProcessGroup> group, c10::intrusive_ptr<c10d::Store> store,
             const std::string& config_text, const std::string& source, bool is_path) {
            ResolveOptions ro;
            ro.world_size = group->getSize();
            const Config c = is_path ? Config::from_file(config_text, ro) : Config::from_string(config_text, ro, source);
            const CommOptions o = CommOptions::from_config(c).with_environment();
            py::gil_scoped_release release;
            return Communicator::adopt(std::move(group), std::move(store), o);
          },
          py::arg("group"), py::arg("store"), py::arg("config_text"), py::arg("source"), py::arg("is_path"),
          "Wraps torch.distributed's process group with the config's comm timeout and debug mode.")
      .def_property_readonly("rank", &Communicator::rank)
      .def_property_readonly("world_size", &Communicator::world_size);

  using NoSync = Scope<NoSyncGuard>;
  using Gathered = Scope<GatheredParameters>;
  py::class_<NoSync>(m, "NoSyncScope").def("close", &NoSync::close);
  py::class_<Gathered>(m, "GatheredScope").def("close", &Gathered::close);

  py::class_<Engine, std::shared_ptr<Engine>>(m, "Engine")
      .def("backward", &Engine::backward, py::arg("loss"), py::call_guard<py::gil_scoped_release>())
      .def("step", &Engine::step, py::call_guard<py::gil_scoped_release>())
      .def("zero_grad", &Engine::zero_grad, py::call_guard<py::gil_scoped_release>())
      .def("is_gradient_accumulation_boundary", &Engine::is_gradient_accumulation_boundary)
      .def("train", &Engine::train, py::arg("on"))
      .def("no_sync", [](Engine& e) { return NoSync{e.no_sync()}; })
      .def(
          "gathered_parameters",
          [](Engine& e, const std::vector<std::string>& names, std::optional<int> modifier_rank) {
            py::gil_scoped_release release;
            return Gathered{e.gathered_parameters(names, modifier_rank)};
          },
          py::arg("names"), py::arg("modifier_rank"))
      .def_property_readonly("global_steps", &Engine::global_steps)
      .def_property_readonly("micro_steps", &Engine::micro_steps)
      .def_property_readonly("skipped_steps", &Engine::skipped_steps)
      .def("was_step_applied", &Engine::was_step_applied)
      .def("lr", &Engine::lr)
      .def("loss_scale", &Engine::loss_scale)
      .def("global_grad_norm", &Engine::global_grad_norm)
      .def_property_readonly("rank", &Engine::rank)
      .def_property_readonly("world_size", &Engine::world_size)
      .def("config_json", [](const Engine& e) { return e.config().to_json_string(); })
      .def("units", &units_list)
      // The forward triggers and the before-backward hooks, for the module hooks.
      .def("before_forward", [](Engine& e, int unit) { e.unit_triggers()->before_forward(unit); },
           py::call_guard<py::gil_scoped_release>())
      .def("after_forward", [](Engine& e, int unit) { e.unit_triggers()->after_forward(unit); },
           py::call_guard<py::gil_scoped_release>())
      .def("leave_unit",
           [](Engine& e, int unit, const std::vector<at::Tensor>& outputs) {
             leave_unit(e.unit_triggers(), unit, outputs);
           },
           py::call_guard<py::gil_scoped_release>())
      .def("full_fp32_param", &Engine::full_fp32_param, py::call_guard<py::gil_scoped_release>())
      .def("full_grad", &Engine::full_grad, py::call_guard<py::gil_scoped_release>())
      .def("full_optimizer_state", &Engine::full_optimizer_state, py::call_guard<py::gil_scoped_release>())
      .def("memory_report", [](const Engine& e) { return memory_dict(e.memory_report()); })
      .def("memory_report_text", [](const Engine& e) { return e.memory_report().to_string(); })
      .def("comm_report", [](const Engine& e) { return comm_dict(e.comm_report()); })
      .def("comm_report_text", [](const Engine& e) { return e.comm_report().to_string(); })
      .def("timers", [](const Engine& e) { return timers_dict(e.timers()); })
      .def("print_line", &Engine::print_line)
      .def(
          "save_checkpoint",
          [](Engine& e, const std::string& dir, const std::string& tag, const std::string& client_state_json,
             bool save_latest) {
            SaveCheckpointOptions o;
            o.client_state = nlohmann::json::parse(client_state_json);
            o.save_latest = save_latest;
            py::gil_scoped_release release;
            return e.save_checkpoint(dir, tag, o);
          },
          py::arg("dir"), py::arg("tag"), py::arg("client_state_json"), py::arg("save_latest"))
      .def(
          "load_checkpoint",
          [](Engine& e, const std::string& dir, const std::string& tag, bool strict, bool optimizer_states,
             bool lr_scheduler_states, bool module_only) -> py::object {
            LoadCheckpointOptions o;
            o.load_module_strict = strict;
            o.load_optimizer_states = optimizer_states;
            o.load_lr_scheduler_states = lr_scheduler_states;
            o.load_module_only = module_only;
            std::optional<LoadedCheckpoint> loaded;
            {
              py::gil_scoped_release release;
              loaded = e.load_checkpoint(dir, tag, o);
            }
            if (!loaded) return py::none();
            return py::make_tuple(loaded->path, loaded->client_state.dump());
          },
          py::arg("dir"), py::arg("tag"), py::arg("strict"), py::arg("optimizer_states"),
          py::arg("lr_scheduler_states"), py::arg("module_only"))
      .def("save_16bit_model", &Engine::save_16bit_model, py::arg("dir"), py::arg("filename"),
           py::call_guard<py::gil_scoped_release>());

  // zerotrain.checkpointing.checkpoint: the C++ checkpoint Function over a
  // Python callable (called with the GIL, on whichever thread runs it).
  m.def(
      "checkpoint",
      [](const std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&)>& fn,
         const std::vector<at::Tensor>& inputs, bool cpu_checkpointing, bool synchronize) {
        checkpointing::CheckpointOptions o;
        o.cpu_checkpointing = cpu_checkpointing;
        o.synchronize_boundary = synchronize;
        py::gil_scoped_release release;
        return checkpointing::checkpoint_tensors(fn, inputs, o);
      },
      py::arg("fn"), py::arg("inputs"), py::arg("cpu_checkpointing"), py::arg("synchronize"));

  m.def("initialize", &make_engine, py::arg("modules"), py::arg("train"), py::arg("buffers"),
        py::arg("config_text"), py::arg("source"), py::arg("is_path"), py::arg("communicator"), py::arg("param_groups"),
        py::arg("wrap_kind"), py::arg("wrap_types"), py::arg("wrap_numel"), py::arg("observer"), py::arg("warn"),
        py::arg("report"),
        "zerotrain::initialize on a described model (use zerotrain.initialize).");
}

}  // namespace zerotrain::python
