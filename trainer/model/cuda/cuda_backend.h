#pragma once
// The CUDA backend (model/backend.h) on this process's current CUDA device: one compute stream,
// the device arena, and the float operations of model/cuda/cuda_ops.h. Double has no CUDA path
// (gradient checks run on the CPU backend).
#include "kernels/cuda/device_memory.h"
#include "trainer/model/backend.h"

namespace baleine::model {

// Makes CUDA device `device` current for this process; before the first cuda_backend() call
// (std::logic_error after it with another device: the backend's memory is on the first one).
void use_cuda_device(int device);

// Created at the first call, on the device current then; lives until the process exits.
// Throws std::runtime_error (from the CUDA runtime's message) where no device can be used.
Backend& cuda_backend();

// The arena behind cuda_backend(): its statistics show whether a warm step still allocates.
kernels::cuda::DeviceArena& cuda_backend_arena();

}  // namespace baleine::model
