// Loads a DeepSpeed config through an installed zerotrain and prints what it
// resolved to: the smallest program that links zerotrain::zerotrain.

#include <iostream>

#include <zerotrain/config.h>
#include <zerotrain/estimate.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: check_config CONFIG.json WORLD_SIZE\n";
    return 2;
  }
  zerotrain::ResolveOptions options;
  options.world_size = std::stoll(argv[2]);
  try {
    const zerotrain::Config config = zerotrain::Config::from_file(argv[1], options);
    const auto& batch = config.batch();
    std::cout << "stage " << config.zero().stage << ", " << zerotrain::to_string(config.model_dtype())
              << ", micro batch " << batch.micro_batch_per_gpu << " x " << batch.gradient_accumulation_steps
              << " steps x " << batch.world_size << " ranks = " << batch.train_batch_size << "\n";
  } catch (const zerotrain::ConfigError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  return 0;
}
