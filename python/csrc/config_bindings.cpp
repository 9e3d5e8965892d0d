// Config resolution, the engine's config checks and the memory estimate for
// Python. A zerotrain::ConfigError becomes zerotrain.ConfigError, a
// ValueError whose `problems` are (path, message) pairs and whose message is
// the C++ one, so a script sees the JSON path of every problem.

#include "bindings.h"

#include <zerotrain/config.h>
#include <zerotrain/engine.h>
#include <zerotrain/estimate.h>

#include <nlohmann/json.hpp>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

namespace py = pybind11;

namespace zerotrain::python {
namespace {

py::list problem_list(const std::vector<ConfigProblem>& problems) {
  py::list out;
  for (const ConfigProblem& p : problems) out.append(py::make_tuple(p.path, p.message));
  return out;
}

// The DeepSpeed/Hugging Face "auto" values a script supplies, by their
// config names (train_micro_batch_size_per_gpu, lr, ...).
AutoValues auto_values(const py::dict& d) {
  AutoValues a;
  for (const auto& [k, v] : d) {
    const std::string key = py::cast<std::string>(k);
    if (v.is_none()) continue;
    if (key == "train_micro_batch_size_per_gpu") a.micro_batch_per_gpu = py::cast<int64_t>(v);
    else if (key == "gradient_accumulation_steps") a.gradient_accumulation_steps = py::cast<int64_t>(v);
    else if (key == "lr") a.lr = py::cast<double>(v);
    else if (key == "betas") a.betas = py::cast<std::array<double, 2>>(v);
    else if (key == "eps") a.eps = py::cast<double>(v);
    else if (key == "weight_decay") a.weight_decay = py::cast<double>(v);
    else if (key == "gradient_clipping") a.gradient_clipping = py::cast<double>(v);
    else if (key == "warmup_steps") a.warmup_steps = py::cast<int64_t>(v);
    else if (key == "total_steps") a.total_steps = py::cast<int64_t>(v);
    else if (key == "fp16") a.fp16 = py::cast<bool>(v);
    else if (key == "bf16") a.bf16 = py::cast<bool>(v);
    else if (key == "hidden_size") a.hidden_size = py::cast<int64_t>(v);
    else throw py::key_error("zerotrain: unknown auto value '" + key + "'");
  }
  return a;
}

// Parses and resolves a config as initialize() will, including the settings
// it refuses (zerotrain::unsupported_settings); returns the resolved document
// as JSON text and the warnings.
py::tuple resolve(const std::string& text, const std::string& source, bool is_path, int64_t world_size,
                  const py::dict& autos) {
  ResolveOptions o;
  o.world_size = world_size;
  o.auto_values = auto_values(autos);
  std::optional<Config> config;
  {
    py::gil_scoped_release release;
    config = is_path ? Config::from_file(text, o) : Config::from_string(text, o, source);
    config->require_resolved();
    require_supported(*config);
  }
  return py::make_tuple(config->to_json_string(), problem_list(config->warnings()));
}

py::dict estimate(int64_t parameters, int64_t world_size, int stage, const std::string& dtype,
                  bool offload_optimizer, bool offload_param) {
  EstimateOptions o;
  o.parameters = parameters;
  o.world_size = world_size;
  if (dtype == "fp32") o.dtype = DType::kFloat32;
  else if (dtype == "fp16") o.dtype = DType::kFloat16;
  else if (dtype == "bf16") o.dtype = DType::kBFloat16;
  else throw py::value_error("zerotrain: dtype must be \"fp32\", \"fp16\" or \"bf16\", got \"" + dtype + "\"");
  o.offload_optimizer = offload_optimizer;
  o.offload_param = offload_param;
  const ModelStateBytes b = estimate_model_states(o, stage);  // std::invalid_argument -> ValueError
  py::dict d;
  d["stage"] = b.stage;
  d["parameters"] = b.parameters;
  d["gradients"] = b.gradients;
  d["optimizer_states"] = b.optimizer_states;
  d["gathered_parameters"] = b.gathered_parameters;
  d["device_total"] = b.device_total();
  d["host_optimizer_states"] = b.host_optimizer_states;
  d["host_parameters"] = b.host_parameters;
  d["host_buffers"] = b.host_buffers;
  d["host_total"] = b.host_total();
  return d;
}

}  // namespace

void bind_config(py::module_& m) {
  static py::handle config_error =
      PyErr_NewExceptionWithDoc("zerotrain._C.ConfigError",
                                "An invalid config: `problems` lists (JSON path, message) pairs; `source` "
                                "names the file, or <string>/<json>.",
                                PyExc_ValueError, nullptr);
  m.attr("ConfigError") = config_error;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ConfigError& e) {
      py::object err = py::reinterpret_borrow<py::object>(config_error)(e.what());
      err.attr("source") = e.source();
      err.attr("problems") = problem_list(e.problems());
      PyErr_SetObject(config_error.ptr(), err.ptr());
    }
  });

  m.def("resolve_config", &resolve, py::arg("text"), py::arg("source"), py::arg("is_path"), py::arg("world_size"),
        py::arg("auto_values"),
        "Parses and resolves a config as initialize() does; returns (resolved JSON text, warnings).");
  m.def("estimate_model_states", &estimate, py::arg("parameters"), py::arg("world_size"), py::arg("stage"),
        py::arg("dtype") = "bf16", py::arg("offload_optimizer") = false, py::arg("offload_param") = false,
        "Per-rank bytes of model states (include/zerotrain/estimate.h).");
}

}  // namespace zerotrain::python
