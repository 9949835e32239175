#pragma once
// The CUDA runtime's stream type, declared as cuda_runtime_api.h declares it, so a header of
// kernels/cuda can name cudaStream_t without pulling in CUDA's headers (the same declaration
// is in kernels/fp8_gemm_cuda.h; repeating an identical alias is allowed).
struct CUstream_st;
using cudaStream_t = CUstream_st*;
