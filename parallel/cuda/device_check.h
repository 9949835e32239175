#pragma once
// Checks for every NCCL call in parallel/cuda (its CUDA runtime calls use kernels/cuda/check.h,
// which words failures the same way). A failed call throws std::runtime_error naming the call,
// its file:line and the library's own words for the error, because "NCCL error 5" in a log of
// 64 ranks helps nobody. The *_WARN forms print instead of throwing: for destructors and for
// teardown after an error, which must not throw.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <stdexcept>
#include <string>

// CUDA runtime calls: BALEINE_CUDA_CALL / BALEINE_CUDA_CALL_WARN, the kernels' own checks.
#include "kernels/cuda/check.h"

namespace baleine::parallel::detail {

// NCCL's error codes are coarse ("unhandled system error"); its last-error text says which
// socket, peer or resource failed, so it is appended when present.
inline std::string nccl_error_text(ncclResult_t status) {
  std::string text = ncclGetErrorString(status);
  const char* detail = ncclGetLastError(nullptr);
  if (detail != nullptr && detail[0] != '\0') text += std::string(" (") + detail + ")";
  return text;
}

}  // namespace baleine::parallel::detail

#define BALEINE_NCCL_CHECK(call)                                                              \
  do {                                                                                        \
    const ncclResult_t baleine_status_ = (call);                                              \
    if (baleine_status_ != ncclSuccess)                                                       \
      throw std::runtime_error(::baleine::kernels::cuda::detail::failed_call(                 \
          "NCCL", #call, __FILE__, __LINE__,                                                  \
          ::baleine::parallel::detail::nccl_error_text(baleine_status_)));                    \
  } while (0)

#define BALEINE_NCCL_WARN(call)                                                               \
  do {                                                                                        \
    const ncclResult_t baleine_status_ = (call);                                              \
    if (baleine_status_ != ncclSuccess)                                                       \
      std::fprintf(stderr, "baleine: warning: %s\n",                                          \
                   ::baleine::kernels::cuda::detail::failed_call(                             \
                       "NCCL", #call, __FILE__, __LINE__,                                     \
                       ::baleine::parallel::detail::nccl_error_text(baleine_status_))         \
                       .c_str());                                                             \
  } while (0)
