#pragma once
// Checks for CUDA runtime and library calls in kernels/cuda (host code). A failed call throws
// std::runtime_error naming the call, its file:line and the library's own words for the error,
// because "error 700" in the log of rank 37 helps nobody. Kernel launches are followed by
// BALEINE_CUDA_LAUNCH_CHECK(): a bad launch configuration is reported there, at the launch,
// rather than by whichever later call happens to see the sticky error.
// The *_WARN form prints instead of throwing: for destructors, which must not throw.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace baleine::kernels::cuda::detail {

inline std::string failed_call(const char* library, const char* call, const char* file,
                               int line, const std::string& error) {
  return std::string(file) + ":" + std::to_string(line) + ": " + library + " call " + call +
         " failed: " + error;
}

}  // namespace baleine::kernels::cuda::detail

#define BALEINE_CUDA_CALL(call)                                                                \
  do {                                                                                         \
    const cudaError_t baleine_status_ = (call);                                                \
    if (baleine_status_ != cudaSuccess)                                                        \
      throw std::runtime_error(::baleine::kernels::cuda::detail::failed_call(                  \
          "CUDA", #call, __FILE__, __LINE__, cudaGetErrorString(baleine_status_)));            \
  } while (0)

#define BALEINE_CUDA_LAUNCH_CHECK() BALEINE_CUDA_CALL(cudaGetLastError())

#define BALEINE_CUDA_CALL_WARN(call)                                                           \
  do {                                                                                         \
    const cudaError_t baleine_status_ = (call);                                                \
    if (baleine_status_ != cudaSuccess)                                                        \
      std::fprintf(stderr, "baleine: warning: %s\n",                                           \
                   ::baleine::kernels::cuda::detail::failed_call(                              \
                       "CUDA", #call, __FILE__, __LINE__, cudaGetErrorString(baleine_status_)) \
                       .c_str());                                                              \
  } while (0)

// cuBLAS and cuBLASLt share cublasStatus_t; cuBLASLt names it. Include <cublasLt.h> first.
#define BALEINE_CUBLAS_CALL(call)                                                              \
  do {                                                                                         \
    const cublasStatus_t baleine_status_ = (call);                                             \
    if (baleine_status_ != CUBLAS_STATUS_SUCCESS)                                              \
      throw std::runtime_error(::baleine::kernels::cuda::detail::failed_call(                  \
          "cuBLAS", #call, __FILE__, __LINE__,                                                 \
          std::string(cublasLtGetStatusName(baleine_status_)) + " (" +                           \
              cublasLtGetStatusString(baleine_status_) + ")"));                                  \
  } while (0)
