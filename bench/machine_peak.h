#pragma once
// What this machine can do at best, measured rather than taken from a datasheet, so a kernel's
// speed can be read as a fraction of it (bench/kernels_bench.cpp):
//   - FP32 FMA throughput: independent vector FMAs that never touch memory, on one thread and
//     on every OpenMP thread at once. The ceiling for a compute-bound kernel (GEMM).
//   - Memory bandwidth: a STREAM triad (McCalpin, https://www.cs.virginia.edu/stream/) over
//     arrays far larger than the last-level cache, on every OpenMP thread. The ceiling for a
//     kernel that streams its data from DRAM.
// A measured peak is what well-written code reaches on this machine (its real clock and turbo
// included), which a datasheet figure for the same CPU model may not be on a VM.
#include <cstdint>
#include <string>

namespace baleine::bench {

struct MachinePeak {
  int threads = 1;                     // omp_get_max_threads() when measured
  double fma_gflops_one_thread = 0;    // FP32, 2 flops per FMA lane
  double fma_gflops_all_threads = 0;   // the same loop on `threads` threads at once
  double triad_gb_per_s = 0;           // 10^9 bytes/s, STREAM's 24 bytes per element
  int64_t triad_bytes_per_array = 0;   // the size that ran
  int triad_repeats = 0;               // best of this many runs
  std::string fma_isa;                 // "avx512f" | "avx2+fma" | "scalar"
};

// FP32 FMA throughput in GFLOP/s on `threads` OpenMP threads: the sum of each thread's rate over
// the CPU time it ran (so other processes sharing the cores do not count against it), best of
// `repeats` runs of about `seconds_per_run` each.
double measure_fma_gflops(int threads, int repeats = 3, double seconds_per_run = 0.1);

// STREAM triad a[i] = b[i] + s·c[i] over three double arrays of `bytes_per_array` bytes each,
// on every OpenMP thread; wall clock, best of `repeats` runs, in 10^9 bytes/s.
double measure_triad_gb_per_s(int64_t bytes_per_array = int64_t(64) << 20, int repeats = 10);

// Both of the above at omp_get_max_threads() (the one-thread FMA figure too).
MachinePeak measure_machine_peak();

}  // namespace baleine::bench
