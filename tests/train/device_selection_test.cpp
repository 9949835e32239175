// `device:` selection (trainer/train/device_selection.h): cpu always runs; cuda runs with a GPU
// per rank and is refused, with a reason and a hint, on each machine that cannot give it.
#include <gtest/gtest.h>

#include <string>

#include "trainer/config/config.h"
#include "trainer/errors.h"
#include "trainer/train/device_selection.h"

namespace baleine::train {
namespace {

config::RunConfig with_device(const std::string& device) {
  config::RunConfig config = config::load_config_from_string(
      "device: " + device + "\ndata:\n  train: tokens.bin\n", "run.yaml");
  return config;
}

// The error require_device throws for `facts` (fails the test when it throws none).
UserError refusal(const config::RunConfig& config, const DeviceFacts& facts) {
  try {
    require_device(config, facts);
  } catch (const UserError& error) {
    return error;
  }
  ADD_FAILURE() << "device: " << config.device << " was accepted";
  return UserError("", "", "");
}

TEST(DeviceSelection, CpuRunsAnywhere) {
  EXPECT_EQ(config::RunConfig().device, "cpu");
  EXPECT_NO_THROW(require_device(with_device("cpu"), DeviceFacts{}));
  EXPECT_NO_THROW(require_device(with_device("cpu"), DeviceFacts{true, 8, "0,1"}));
}

TEST(DeviceSelection, CudaWithoutTheBackendSaysToRebuild) {
  const UserError e = refusal(with_device("cuda"), DeviceFacts{false, 0, ""});
  EXPECT_EQ(e.key(), "device");
  EXPECT_EQ(e.where(), "run.yaml:1");
  EXPECT_NE(std::string(e.what()).find("built without the CUDA backend"), std::string::npos);
  EXPECT_NE(e.hint().find("device: cpu"), std::string::npos);
}

TEST(DeviceSelection, CudaWithoutAGpuNamesTheVisibleDevices) {
  const UserError e = refusal(with_device("cuda"), DeviceFacts{true, 0, "7"});
  EXPECT_NE(std::string(e.what()).find("no CUDA GPU is visible"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("CUDA_VISIBLE_DEVICES=7"), std::string::npos) << e.what();
  EXPECT_NE(e.hint().find("nvidia-smi"), std::string::npos);
}

TEST(DeviceSelection, CudaWithAGpuPerRankRuns) {
  EXPECT_NO_THROW(require_device(with_device("cuda"), DeviceFacts{true, 1, "", 1}));
  EXPECT_NO_THROW(require_device(with_device("cuda"), DeviceFacts{true, 8, "", 8}));
}

TEST(DeviceSelection, CudaWithMoreRanksThanGpusSaysHowManyToStart) {
  const UserError e = refusal(with_device("cuda"), DeviceFacts{true, 2, "", 4});
  EXPECT_EQ(e.key(), "device");
  EXPECT_NE(std::string(e.what()).find("4 ranks on this node but 2 GPU(s)"), std::string::npos)
      << e.what();
  EXPECT_NE(e.hint().find("ppr:2:node"), std::string::npos) << e.hint();
}

TEST(DeviceSelection, UnknownDeviceSuggestsOne) {
  try {
    with_device("cdua");
    FAIL() << "device: cdua loaded";
  } catch (const UserError& e) {
    EXPECT_EQ(e.key(), "device");
    EXPECT_NE(e.hint().find("cuda"), std::string::npos) << e.hint();
  }
}

}  // namespace
}  // namespace baleine::train
