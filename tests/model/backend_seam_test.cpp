// model/backend.h: a model talks to its backend only through Ops<T> and the backend's Memory.
// A stand-in "device" backend runs the CPU operations on memory that says it is not the host
// (its bytes are host bytes, so the CPU kernels can still read them): a model built on it must
// reach exactly the bits of a model on the CPU backend, in every precision, with its buffers
// allocated in that memory and its inputs, losses and routing counts crossing through explicit
// transfers. That is what the CUDA backend relies on.
#include <gtest/gtest.h>

#include <cstring>

#include "tests/gradcheck.h"
#include "tests/model/model_test_configs.h"
#include "tests/model/stand_in_backend.h"
#include "trainer/model/model.h"

namespace baleine::model {
namespace {

using baleine::testing::random_ids;
using baleine::testing::StandInBackend;
using baleine::testing::StandInDeviceMemory;

// The small MoE with the balance loss on.
config::ModelSection small_moe() {
  config::ModelSection m = baleine::testing::small_moe_model();
  m.moe.seq_aux_alpha = 1e-3;
  return m;
}

struct Outcome {
  double loss = 0;
  std::vector<float> values, grads;
};

// Two micro-batches through a split backward (B, then W), then the gradients.
Outcome run(const std::string& compute) {
  config::PrecisionSection p;
  p.compute = compute;
  Model<float> model(small_moe(), 5, {}, plan_precision(p));
  const BatchShape shape{2, 32};
  Outcome o;
  for (int micro = 0; micro < 2; ++micro) {
    const auto inputs = random_ids(shape.tokens(), 257, 10 + micro);
    const auto targets = random_ids(shape.tokens(), 257, 20 + micro);
    o.loss += model.forward_part(0, micro, inputs.data(), targets.data(), nullptr, nullptr, shape)
                  .total();
  }
  for (int micro = 0; micro < 2; ++micro) {
    model.backward_part(0, micro, nullptr, nullptr, 0.5f, /*split=*/true);
  }
  for (int micro = 0; micro < 2; ++micro) model.backward_weight_part(0, micro);
  o.values = model.parameters().values().to_host();
  o.grads = model.parameters().grads().to_host();
  return o;
}

TEST(BackendSeam, AModelOnAnotherMemoryComputesTheCpuBitsThroughExplicitTransfers) {
  for (const std::string compute : {"fp32", "bf16", "fp8"}) {
    SCOPED_TRACE(compute);
    const Outcome cpu = run(compute);
    StandInBackend device;
    const StandInDeviceMemory& memory = device.memory;
    Outcome other;
    {
      const BackendScope scope(device.backend);
      other = run(compute);
    }
    EXPECT_EQ(cpu.loss, other.loss);
    EXPECT_EQ(cpu.values, other.values);
    ASSERT_EQ(cpu.grads.size(), other.grads.size());
    EXPECT_EQ(0, std::memcmp(cpu.grads.data(), other.grads.data(),
                             cpu.grads.size() * sizeof(float)));
    EXPECT_GT(memory.allocations, 0);
    // Token ids and targets per micro-batch, the expert biases per MoE forward, the initial
    // parameters; routing counts and the parameter reads on the way back.
    EXPECT_GE(memory.from_host_calls, 2 * 2 + 1);
    EXPECT_GE(memory.to_host_calls, 2 * 2 + 2);
  }
}

TEST(BackendSeam, DoubleNeedsABackendWithADoublePath) {
  StandInBackend device;
  const BackendScope scope(device.backend);
  EXPECT_THROW(Model<double>(small_moe(), 5), std::logic_error);
  EXPECT_NO_THROW(ops<float>());
}

}  // namespace
}  // namespace baleine::model
