#pragma once
// Internal to kernels/cuda/cudnn_attention*.cpp: cuDNN backend descriptors with RAII, and the
// forward and backward attention graphs (kernels/cuda/cudnn_attention_graph.cpp) that
// kernels/cuda/cudnn_attention.cpp turns into cached execution plans. The public interface is
// kernels/cuda/cudnn_attention.h, which needs no CUDA headers; this one includes cuDNN's.
#include <cudnn_graph.h>

#include <array>
#include <cstdint>
#include <deque>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/cudnn_attention.h"

namespace baleine::kernels::cuda::cudnn_attention_detail {

// ---- errors -------------------------------------------------------------------------------

// A cuDNN call that failed: while building, supported() turns it into a refusal; while running,
// it reaches the caller (a std::runtime_error).
class CudnnFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// cuDNN's last error message in this thread (which rule a graph broke, say), or "".
std::string last_cudnn_message();
// "step: CUDNN_STATUS_… (cuDNN's last error message, when it has one)".
std::string describe(cudnnStatus_t status, const std::string& step);

inline void check(cudnnStatus_t status, const std::string& step) {
  if (status != CUDNN_STATUS_SUCCESS) throw CudnnFailure(describe(status, step));
}

// ---- one backend descriptor ---------------------------------------------------------------

// Owns a cudnnBackendDescriptor_t; `what` names it in error messages.
class Descriptor {
 public:
  Descriptor(cudnnBackendDescriptorType_t type, std::string what) : what_(std::move(what)) {
    check(cudnnBackendCreateDescriptor(type, &desc_), what_ + ": create");
  }
  Descriptor(Descriptor&& other) noexcept
      : desc_(std::exchange(other.desc_, nullptr)), what_(std::move(other.what_)) {}
  Descriptor& operator=(Descriptor&& other) noexcept {
    std::swap(desc_, other.desc_);
    std::swap(what_, other.what_);
    return *this;
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() {
    if (desc_ != nullptr) cudnnBackendDestroyDescriptor(desc_);
  }

  cudnnBackendDescriptor_t get() const { return desc_; }

  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
           const void* values) {
    check(cudnnBackendSetAttribute(desc_, name, type, count, values),
          what_ + ": attribute " + std::to_string(static_cast<int>(name)));
  }
  void set(cudnnBackendAttributeName_t name, int64_t value) {
    set(name, CUDNN_TYPE_INT64, 1, &value);
  }
  void set(cudnnBackendAttributeName_t name, const std::array<int64_t, 4>& values) {
    set(name, CUDNN_TYPE_INT64, 4, values.data());
  }
  void set(cudnnBackendAttributeName_t name, cudnnDataType_t type) {
    set(name, CUDNN_TYPE_DATA_TYPE, 1, &type);
  }
  void set(cudnnBackendAttributeName_t name, bool value) {
    set(name, CUDNN_TYPE_BOOLEAN, 1, &value);
  }
  void set(cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t value) {
    set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value);
  }
  void finalize() { check(cudnnBackendFinalize(desc_), what_ + ": finalize"); }
  int64_t get_int64(cudnnBackendAttributeName_t name) const {
    int64_t value = 0, count = 0;
    check(cudnnBackendGetAttribute(desc_, name, CUDNN_TYPE_INT64, 1, &count, &value),
          what_ + ": read attribute " + std::to_string(static_cast<int>(name)));
    return value;
  }

 private:
  cudnnBackendDescriptor_t desc_ = nullptr;
  std::string what_;
};

// ---- shapes and tensors -------------------------------------------------------------------

// A problem shape in our order (batch, seq, heads, head_dim).
struct Shape {
  int64_t b, s, h, d;
};

// cuDNN's dims and strides of a 4-d tensor.
struct Layout {
  std::array<int64_t, 4> dims, strides;
};

// The UIDs of the variant packs' tensors; virtual tensors are numbered from kFirstVirtualUid.
enum Uid : int64_t {
  kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV,  // caller memory
  kScale, kNegativeInfinity, kOne,                // host scalars passed by value
  kRowTerm, kDQAccumulator,                       // the backward's FP32 workspace tensors
  kFirstVirtualUid = 100,
};

using Tensor = cudnnBackendDescriptor_t;

// Every tensor declares this byte alignment; execution checks the caller's pointers against it.
constexpr int64_t kTensorAlignment = 16;

// ---- a graph under construction -----------------------------------------------------------

// The tensors and operations of one graph; owns every descriptor for as long as its execution
// plan lives (the plan was made from them). Every call finalizes what it makes, so a graph cuDNN
// rejects fails at the operation it rejects, with that operation named.
class Graph {
 public:
  // Non-virtual: device memory (or, with by_value, a host scalar) bound at execution by uid.
  Tensor real(int64_t uid, const Layout& layout, cudnnDataType_t type, bool by_value = false);
  Tensor host_scalar(int64_t uid);  // an FP32 [1,1,1,1] passed by value
  Tensor virt(const Layout& layout, cudnnDataType_t type = CUDNN_DATA_FLOAT);

  // y = mode(x[, b[, t]]) elementwise; `axis` only for GEN_INDEX.
  void pointwise(cudnnPointwiseMode_t mode, Tensor y, Tensor x, Tensor b = nullptr,
                 Tensor t = nullptr, cudnnDataType_t math = CUDNN_DATA_FLOAT, int64_t axis = -1);
  void matmul(Tensor a, Tensor b, Tensor c);  // c = a · b over the last two dims, FP32 math
  // y = reduce(x) over the dims where y has extent 1.
  void reduction(cudnnReduceTensorOp_t mode, Tensor x, Tensor y);
  void reshape(Tensor x, Tensor y);  // y = x seen through y's dims and strides

  // The operation graph of everything added, bound to `handle`.
  Descriptor finalize(cudnnHandle_t handle, const std::string& name) const;

 private:
  Tensor tensor(int64_t uid, const Layout& layout, cudnnDataType_t type, bool is_virtual,
                bool by_value);
  Descriptor& keep(cudnnBackendDescriptorType_t type, std::string what);
  void add_operation(Descriptor& op);

  std::deque<Descriptor> owned_;    // tensors and operations; a deque keeps references valid
  std::vector<Tensor> operations_;  // in the order added, which is topological
  int64_t next_virtual_uid_ = kFirstVirtualUid;
};

// ---- the two graphs (see kernels/cuda/cudnn_attention.h for what they compute) ------------

// Tensors kQ, kK, kV, kO (BF16), kStats (FP32), host scalars kScale and kNegativeInfinity.
Graph forward_graph(const Shape& x);
// Tensors kQ, kK, kV, kO, kDO, kDQ, kDK, kDV (BF16), kStats (FP32), host scalars kScale, kOne
// and kNegativeInfinity, workspace kRowTerm (FP32 [b, h, s, 1]) and, for kAtomic,
// kDQAccumulator (FP32 [b, h, s, d] packed).
Graph backward_graph(const Shape& x, CudnnBackwardAlgorithm algorithm);

}  // namespace baleine::kernels::cuda::cudnn_attention_detail
