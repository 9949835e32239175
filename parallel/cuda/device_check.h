#pragma once
// Checks for every CUDA runtime and NCCL call in parallel/cuda. A failed call throws
// std::runtime_error naming the call, its file:line and the library's own words for the error,
// because "NCCL error 5" in a log of 64 ranks helps nobody. The *_WARN forms print instead of
// throwing: for destructors and for teardown after an error, which must not throw.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace baleine::parallel::detail {

inline std::string describe_failed_call(const char* library, const char* call, const char* file,
                                        int line, const char* error) {
  return std::string(file) + ":" + std::to_string(line) + ": " + library + " call " + call +
         " failed: " + error;
}

// NCCL's error codes are coarse ("unhandled system error"); its last-error text says which
// socket, peer or resource failed, so it is appended when present.
inline std::string nccl_error_text(ncclResult_t status) {
  std::string text = ncclGetErrorString(status);
  const char* detail = ncclGetLastError(nullptr);
  if (detail != nullptr && detail[0] != '\0') text += std::string(" (") + detail + ")";
  return text;
}

}  // namespace baleine::parallel::detail

#define BALEINE_CUDA_CHECK(call)                                                              \
  do {                                                                                        \
    const cudaError_t baleine_status_ = (call);                                               \
    if (baleine_status_ != cudaSuccess)                                                       \
      throw std::runtime_error(::baleine::parallel::detail::describe_failed_call(             \
          "CUDA", #call, __FILE__, __LINE__, cudaGetErrorString(baleine_status_)));           \
  } while (0)

#define BALEINE_NCCL_CHECK(call)                                                              \
  do {                                                                                        \
    const ncclResult_t baleine_status_ = (call);                                              \
    if (baleine_status_ != ncclSuccess)                                                       \
      throw std::runtime_error(::baleine::parallel::detail::describe_failed_call(             \
          "NCCL", #call, __FILE__, __LINE__,                                                  \
          ::baleine::parallel::detail::nccl_error_text(baleine_status_).c_str()));            \
  } while (0)

#define BALEINE_CUDA_WARN(call)                                                               \
  do {                                                                                        \
    const cudaError_t baleine_status_ = (call);                                               \
    if (baleine_status_ != cudaSuccess)                                                       \
      std::fprintf(stderr, "baleine: warning: %s\n",                                          \
                   ::baleine::parallel::detail::describe_failed_call(                         \
                       "CUDA", #call, __FILE__, __LINE__, cudaGetErrorString(baleine_status_)) \
                       .c_str());                                                             \
  } while (0)

#define BALEINE_NCCL_WARN(call)                                                               \
  do {                                                                                        \
    const ncclResult_t baleine_status_ = (call);                                              \
    if (baleine_status_ != ncclSuccess)                                                       \
      std::fprintf(stderr, "baleine: warning: %s\n",                                          \
                   ::baleine::parallel::detail::describe_failed_call(                         \
                       "NCCL", #call, __FILE__, __LINE__,                                     \
                       ::baleine::parallel::detail::nccl_error_text(baleine_status_).c_str()) \
                       .c_str());                                                             \
  } while (0)
