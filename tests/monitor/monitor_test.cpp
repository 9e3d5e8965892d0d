// Progress reports and monitors: the exact text of the report line, the bar
// and the breakdown; CSV files appended across runs; TensorBoard records
// framed and checksummed; and an engine's report of its own loss and rates.
// read_tfevents.py (in train_gpt_monitors.sh) reads the event files with
// TensorBoard's own loader.

#include "engine/training.h"
#include "checkpoint/checkpoint_util.h"  // TempDir
#include "comm/worker_util.h"
#include "support/multiprocess.h"
#include "monitor/monitors.h"
#include "monitor/progress.h"
#include "monitor/tfevents.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

namespace zerotrain::testing {
namespace {

using namespace zerotrain::monitor;

using ckpt::read_small_file;

TEST(MonitorText, NumbersAndDurations) {
  EXPECT_EQ(format_duration(59.4), "0:59");
  EXPECT_EQ(format_duration(3725), "1:02:05");
  EXPECT_EQ(format_si(54400), "54.4k");
  EXPECT_EQ(format_si(1.2e6), "1.20M");
  EXPECT_EQ(format_si(123456), "123k");
  EXPECT_EQ(format_si(12), "12.0");
}

TEST(MonitorText, ReportLineShowsEveryFieldItHas) {
  IntervalReport r;
  r.step = 100;
  r.total_steps = 600;
  r.loss = 2.31415;
  r.lr = {1e-3, 5e-4};
  r.loss_scale = 65536;
  r.grad_norm = 0.8123;
  r.skipped = 2;
  r.samples_per_sec = 425;
  r.tokens_per_sec = 54400;
  r.tflops_per_device = 312.5;
  r.mfu = 0.316;
  r.peak_memory = {412000000, 1500000000};
  r.memory_kind = "peak allocated";
  EXPECT_EQ(
      format_report(r),
      "[zerotrain] step 100/600 | loss 2.3142 | lr 1.000e-03 5.000e-04 | loss scale 65536 | grad norm 0.8123"
      " | skipped 2 | 425.0 samples/s | 54.4k tokens/s | 312.5 TFLOPs (MFU 31.6%)"
      " | peak allocated r0 412.0 MB, r1 1.5 GB");
  IntervalReport plain;  // what a CPU run of an MLP without a known length shows
  plain.step = 7;
  plain.loss = 0.5;
  plain.lr = {0.1};
  plain.grad_norm = -1;
  plain.samples_per_sec = 3;
  plain.peak_memory = {-1};
  plain.memory_kind = "peak RSS";
  EXPECT_EQ(format_report(plain),
            "[zerotrain] step 7 | loss 0.5000 | lr 1.000e-01 | grad norm inf/nan | skipped 0"
            " | 3.0 samples/s | peak RSS r0 ?");
  IntervalReport many = plain;
  many.peak_memory = std::vector<int64_t>(12, 2000000);
  many.peak_memory[9] = 5000000;
  many.memory_kind = "peak RSS";
  EXPECT_NE(format_report(many).find("peak RSS max 5.0 MB (r9), min 2.0 MB (r0)"), std::string::npos)
      << format_report(many);
}

TEST(MonitorText, BreakdownIsPerStepOverTheInterval) {
  PhaseTimes before, now;
  before.total_ms = {10, 20, 1, 4, 0};
  before.count = {1, 1, 1, 1, 0};
  now.total_ms = {30, 80, 3, 8, 0};
  now.count = {3, 3, 3, 3, 0};
  EXPECT_EQ(
      format_breakdown(now, before, 2),
      "[zerotrain] time per step (ms): forward 10.00 | backward 30.00 | reduce 1.00 (not hidden by backward)"
      " | step 2.00");
}

TEST(MonitorText, ProgressBar) {
  BarState b;
  b.step = 150;
  b.total_steps = 600;
  b.loss = 2.5;
  b.rate = 13300;
  b.tokens = true;
  b.elapsed_s = 42;
  b.eta_s = 168;
  EXPECT_EQ(format_bar(b, 8), "step 150/600 [##------]  25% | loss 2.5000 | 13.3k tok/s | 0:42<2:48");
  b.step = 600;
  b.loss.reset();
  b.rate = 0;
  b.eta_s.reset();
  EXPECT_EQ(format_bar(b, 4), "step 600/600 [####] 100% | 0:42<?");
}

TEST(MonitorCsv, OneFilePerEventHeaderOnceAndAppendedAcrossRuns) {
  TempDir tmp;
  const std::string dir = tmp / "csv";
  LoggingConfig logging;
  logging.csv_monitor.enabled = true;
  logging.csv_monitor.output_path = dir;
  logging.csv_monitor.job_name = "job";
  {
    Monitors m(logging, /*rank=*/0);
    ASSERT_TRUE(m.enabled());
    m.write({{"Train/Samples/train_loss", 2.5, 32}, {"Train/Samples/lr", 1e-3, 32}});
    m.write({{"Train/Samples/train_loss", 2.25, 64}});
  }
  {
    Monitors again(logging, 0);  // a resumed run appends
    again.write({{"Train/Samples/train_loss", 2.125, 96}});
  }
  EXPECT_EQ(read_small_file(dir + "/job/Train_Samples_train_loss.csv"),
            "step,Train/Samples/train_loss\n32,2.5\n64,2.25\n96,2.125\n");
  EXPECT_EQ(read_small_file(dir + "/job/Train_Samples_lr.csv"), "step,Train/Samples/lr\n32,0.001\n");
  Monitors other_rank(logging, 1);
  EXPECT_FALSE(other_rank.enabled());
}

TEST(MonitorCsv, AnUnusableOutputPathNamesTheSection) {
  TempDir tmp;
  const std::string dir = tmp / "file";
  { std::ofstream(dir) << "a file, not a directory"; }
  LoggingConfig logging;
  logging.tensorboard.enabled = true;
  logging.tensorboard.output_path = dir;
  try {
    Monitors m(logging, 0);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensorboard.output_path"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
  }
}

TEST(MonitorTensorBoard, Crc32cMatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // RFC 3720's CRC-32C check value
  EXPECT_EQ(crc32c("", 0), 0u);
}

// Reads the TFRecord frames back, checking both masked CRCs of each.
std::vector<std::string> read_records(const std::string& path) {
  const std::string bytes = read_small_file(path);
  const auto masked = [](const void* p, size_t n) {
    const uint32_t c = crc32c(p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
  };
  std::vector<std::string> out;
  size_t at = 0;
  while (at < bytes.size()) {
    uint64_t length = 0;
    uint32_t length_crc = 0, data_crc = 0;
    EXPECT_LE(at + 12, bytes.size());
    std::memcpy(&length, bytes.data() + at, 8);
    std::memcpy(&length_crc, bytes.data() + at + 8, 4);
    EXPECT_EQ(length_crc, masked(bytes.data() + at, 8)) << "record at " << at;
    EXPECT_LE(at + 12 + length + 4, bytes.size());
    const std::string data = bytes.substr(at + 12, length);
    std::memcpy(&data_crc, bytes.data() + at + 12 + length, 4);
    EXPECT_EQ(data_crc, masked(data.data(), data.size())) << "record at " << at;
    out.push_back(data);
    at += 12 + length + 4;
  }
  return out;
}

TEST(MonitorTensorBoard, RecordsAreFramedChecksummedAndHoldTheTagAndValue) {
  TempDir tmp;
  const std::string dir = tmp / "tb";
  ckpt::make_directories(dir);
  std::string path;
  {
    EventFileWriter w(dir);
    path = w.path();
    w.add_scalar("Train/Samples/train_loss", 2.5, 320, 1700000000.0);
    w.add_scalar("Validation/loss", 1.75, 640, 1700000001.0);
    w.flush();
  }
  EXPECT_NE(path.find("/events.out.tfevents."), std::string::npos);
  const std::vector<std::string> records = read_records(path);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_NE(records[0].find("brain.Event:2"), std::string::npos);
  // Event{wall_time=1 (fixed64), step=2 (varint 320 = c0 02), summary=5 {value=1 {tag=1, simple_value=2}}}
  const std::string& r = records[1];
  EXPECT_EQ(static_cast<unsigned char>(r[0]), 0x09u);  // field 1, 64-bit
  EXPECT_EQ(r.substr(9, 3), std::string("\x10\xc0\x02", 3));
  EXPECT_NE(r.find("Train/Samples/train_loss"), std::string::npos);
  const float value = 2.5f;
  std::string encoded("\x15", 1);
  encoded.append(reinterpret_cast<const char*>(&value), 4);
  EXPECT_NE(r.find(encoded), std::string::npos);
}

// An engine on one rank reports the mean of the losses it was given over each
// steps_per_print interval, its rates and memory, and writes one event of
// each kind per step.
TEST(MonitorEngine, ReportLineAndEventsFollowTheTraining) {
  TempDir tmp;
  const std::string dir = tmp / "engine";
  const Config config = test_config(2, "fp32", 4, 2, 1.0, [&](nlohmann::json& j) {
    j["steps_per_print"] = 3;
    j["csv_monitor"] = {{"enabled", true}, {"output_path", dir}, {"job_name", "run"}};
  });
  auto model = make_model(ModelKind::kMlp);
  const Data data = make_data(*model, 6, 4 * 2);
  InitOptions o;
  o.communicator = one_rank_communicator();
  o.progress.tokens_per_sample = 10;
  o.progress.total_steps = 6;
  o.progress.bar = ProgressBar::kOff;
  ::testing::internal::CaptureStdout();
  std::vector<double> step_loss;
  {
    Engine e = initialize(model, config, o);
    for (int s = 0; s < 6; ++s) {
      double sum = 0;
      for (int k = 0; k < 2; ++k) {
        at::Tensor x = rows(data.x[s], 0, 1, 4, k), y = rows(data.y[s], 0, 1, 4, k);
        sum += e.backward(torch::mse_loss(model->forward(x), y)).item<double>();
        e.step();
      }
      step_loss.push_back(sum);
    }
    e.write_events({{"Validation/loss", 0.25, 48}});
  }
  const std::string out = ::testing::internal::GetCapturedStdout();
  char expected[64];
  std::snprintf(expected, sizeof expected, "step 3/6 | loss %.4f | lr",
                (step_loss[0] + step_loss[1] + step_loss[2]) / 3);
  EXPECT_NE(out.find(expected), std::string::npos) << out;
  std::snprintf(expected, sizeof expected, "step 6/6 | loss %.4f | lr",
                (step_loss[3] + step_loss[4] + step_loss[5]) / 3);
  EXPECT_NE(out.find(expected), std::string::npos) << out;
  EXPECT_NE(out.find(" samples/s | "), std::string::npos) << out;
  EXPECT_NE(out.find(" tokens/s | "), std::string::npos) << out;
  EXPECT_NE(out.find(" TFLOPs | peak RSS r0 "), std::string::npos) << out;
  EXPECT_EQ(out.find("MFU"), std::string::npos) << "no MFU without a known peak: " << out;

  std::istringstream csv(read_small_file(dir + "/run/Train_Samples_train_loss.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "step,Train/Samples/train_loss");
  for (int s = 0; s < 6; ++s) {
    ASSERT_TRUE(std::getline(csv, line)) << "step " << s;
    const size_t comma = line.find(',');
    EXPECT_EQ(line.substr(0, comma), std::to_string(8 * (s + 1)));  // global samples
    EXPECT_NEAR(std::stod(line.substr(comma + 1)), step_loss[static_cast<size_t>(s)], 1e-6 * step_loss[0]);
  }
  EXPECT_FALSE(std::getline(csv, line)) << "one row per step";
  EXPECT_TRUE(ckpt::path_exists(dir + "/run/Train_Samples_lr.csv"));
  EXPECT_TRUE(ckpt::path_exists(dir + "/run/Train_Samples_grad_norm.csv"));
  EXPECT_EQ(read_small_file(dir + "/run/Validation_loss.csv"), "step,Validation/loss\n48,0.25\n");
}

// Only rank 0 creates the monitors' directories. When that fails, every rank's
// initialize() must fail at once (rank 1 naming rank 0), not leave rank 1 to
// hang in its first collective.
ZT_WORKER(monitor_bad_path_fails_every_rank) {
  auto comm = init_distributed();
  RankChecks checks(comm->rank());
  const std::string blocker = std::string(std::getenv("ZT_MONITOR_BLOCKER"));
  const Config config = test_config(2, "fp32", 4, 1, 0.0, [&](nlohmann::json& j) {
    j["tensorboard"] = {{"enabled", true}, {"output_path", blocker}, {"job_name", "run"}};
  });
  InitOptions o;
  o.communicator = comm;
  std::string message;
  try {
    initialize(make_model(ModelKind::kMlp), config, o);
  } catch (const c10::Error& e) {
    message = e.what();
  }
  if (comm->rank() == 0)
    checks.require(message.find("tensorboard.output_path") != std::string::npos,
                   "rank 0's error names the section: '" + message + "'");
  else
    checks.require(message.find("failed on rank 0") != std::string::npos,
                   "rank 1's error names rank 0: '" + message + "'");
  return checks.exit_code();
}

TEST(MonitorSetup, ABadOutputPathFailsEveryRankAtInitialize) {
  TempDir tmp;
  const std::string blocker = tmp / "blocker";
  { std::ofstream(blocker) << "a file where the directory should be"; }
  RankJob job;
  job.world_size = 2;
  job.worker = "monitor_bad_path_fails_every_rank";
  job.timeout = std::chrono::seconds(60);
  job.env["ZT_MONITOR_BLOCKER"] = blocker;
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(job)));
}

}  // namespace
}  // namespace zerotrain::testing
