// The machine's measured FP32 FMA throughput and STREAM triad bandwidth (see machine_peak.h).
#include "bench/machine_peak.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <new>
#include <stdexcept>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace baleine::bench {
namespace {

// One vector register of floats and a fused multiply-add on it, in the widest ISA the build
// targets (the build uses -march=native). Written with intrinsics, not a*b+c: ISO C++ mode
// (-std=c++17) makes GCC default to -ffp-contract=off, so a*b+c would be two instructions.
#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kLanes = 16;
constexpr const char* kIsa = "avx512f";
inline Vec splat(float x) { return _mm512_set1_ps(x); }
inline Vec fused_multiply_add(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
constexpr int kLanes = 8;
constexpr const char* kIsa = "avx2+fma";
inline Vec splat(float x) { return _mm256_set1_ps(x); }
inline Vec fused_multiply_add(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
#else
// No FMA instruction: a multiply and an add, still 2 flops per lane.
using Vec = float;
constexpr int kLanes = 1;
constexpr const char* kIsa = "scalar";
inline Vec splat(float x) { return x; }
inline Vec fused_multiply_add(Vec a, Vec b, Vec c) { return a * b + c; }
#endif

// The lanes of v added in order, whatever the ISA. Through memory rather than
// _mm512_reduce_add_ps, which trips GCC 12's -Wuninitialized.
inline float lane_sum(Vec v) {
  static_assert(sizeof(Vec) == kLanes * sizeof(float), "a Vec is kLanes floats");
  float lanes[kLanes];
  std::memcpy(lanes, &v, sizeof(lanes));
  float sum = 0;
  for (float x : lanes) sum += x;
  return sum;
}

// Independent dependency chains. A core sustains (FMA latency x FMA issues per cycle) FMAs in
// flight: 4 cycles x 2 pipes = 8 on Intel's two-FMA-unit cores (Intel 64 and IA-32
// Optimization Reference Manual), 4 x 1 for 512-bit FMAs on AMD Zen 4. Twelve chains cover
// both and leave registers for the two constants even with AVX2's 16 ymm registers.
constexpr int kChains = 12;

// `iterations` rounds of kChains FMAs; x ← x·m + a converges to a/(1 − m) ≈ 1, so values stay
// normal (no denormal slow path) and finite however long it runs. The sum of the chains is
// returned and used by the caller, so the loop cannot be dropped.
float fma_chains(int64_t iterations, float seed) {
  Vec acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = splat(seed + 0.01f * float(c));
  const Vec mul = splat(0.999999f), add = splat(1e-6f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = fused_multiply_add(acc[c], mul, add);
  }
  float sum = 0;
  for (int c = 0; c < kChains; ++c) sum += lane_sum(acc[c]);
  return sum;
}

volatile float g_fma_sink = 0;     // where every FMA result ends up
volatile double g_triad_sink = 0;  // and a sample of the triad's output

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// FMA rate in flop/s of `threads` threads running `iterations` rounds each at once: the sum of
// each thread's flops over the CPU time that thread ran. CPU time, not wall clock: on a shared
// machine the scheduler hands the core to other processes part of the time, and wall clock
// would measure that share instead of the core. Frequency drops under all-core vector load
// still show, since every thread runs at the same time when the machine is quiet.
double fma_rate(int threads, int64_t iterations) {
  const double flops_per_thread = 2.0 * kLanes * kChains * double(iterations);
  float sink = 0;
  double rate = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink, rate)
  {
    const double start = thread_cpu_seconds();
    sink += fma_chains(iterations, 1.0f + float(omp_get_thread_num()));
    rate += flops_per_thread / std::max(1e-9, thread_cpu_seconds() - start);
  }
  g_fma_sink = g_fma_sink + sink;
  return rate;
}

struct FreeDeleter {
  void operator()(double* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<double, FreeDeleter>;

Buffer allocate_doubles(int64_t n) {
  const size_t bytes = (size_t(n) * sizeof(double) + 63) / 64 * 64;
  auto* p = static_cast<double*>(std::aligned_alloc(64, bytes));
  if (p == nullptr) throw std::bad_alloc();
  return Buffer(p);
}

// The largest cache of CPU 0 as Linux's sysfs describes it (0 when unreadable). Not
// sysconf(_SC_LEVEL3_CACHE_SIZE): glibc derives that from CPUID, and on an AMD EPYC VM here it
// reported 320 MiB for a 32 MiB L3.
int64_t last_level_cache_bytes() {
  int best_level = 0;
  int64_t bytes = 0;
  for (int index = 0; index < 16; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index);
    std::ifstream level_file(dir + "/level"), size_file(dir + "/size");
    int level = 0;
    int64_t size = 0;
    std::string unit;
    if (!(level_file >> level) || !(size_file >> size)) break;
    size_file >> unit;  // "K" or "M" follows the number ("32768K")
    if (unit == "K") size <<= 10;
    if (unit == "M") size <<= 20;
    if (level > best_level) best_level = level, bytes = size;
  }
  return bytes;
}

}  // namespace

double measure_fma_gflops(int threads, int repeats, double seconds_per_run) {
  if (threads < 1 || repeats < 1) throw std::invalid_argument("measure_fma_gflops: bad arguments");
  // Calibrate on one thread: double the work until a run is long enough to time, then scale.
  int64_t iterations = int64_t(1) << 16;
  double seconds = 0;
  for (;;) {
    const double flops = 2.0 * kLanes * kChains * double(iterations);
    seconds = flops / fma_rate(1, iterations);
    if (seconds >= 0.02) break;
    iterations *= 2;
  }
  iterations = std::max<int64_t>(1, int64_t(double(iterations) * seconds_per_run / seconds));
  double best = 0;
  for (int r = 0; r < repeats; ++r) best = std::max(best, fma_rate(threads, iterations));
  return best * 1e-9;
}

double measure_triad_gb_per_s(int64_t bytes_per_array, int repeats) {
  if (bytes_per_array < 1024 || repeats < 1) {
    throw std::invalid_argument("measure_triad_gb_per_s: bad arguments");
  }
  const int64_t n = bytes_per_array / int64_t(sizeof(double));
  Buffer a = allocate_doubles(n), b = allocate_doubles(n), c = allocate_doubles(n);
  double* pa = a.get();
  double* pb = b.get();
  double* pc = c.get();
  // First touch with the triad's own static schedule, as STREAM does: on a NUMA machine each
  // thread's pages then sit on its own node.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    pa[i] = 0.5;
    pb[i] = 1.0 + double(i % 7);
    pc[i] = 2.5 - double(i % 5);
  }
  // Wall clock, not CPU time: bandwidth is shared by every core, so a thread's rate alone means
  // nothing. Each run is short (tens of ms), and the best of several is the least disturbed by
  // other processes on the machine.
  const double scalar = 3.0;
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const double start = omp_get_wtime();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + scalar * pc[i];
    best = std::min(best, omp_get_wtime() - start);
  }
  g_triad_sink = g_triad_sink + pa[0] + pa[n / 2] + pa[n - 1];
  // McCalpin's STREAM counts 24 bytes per triad element: read b[i] and c[i], write a[i], 8
  // bytes each. The write-allocate read of a[i] that most caches add is not counted, so the
  // hardware moves up to 32 bytes; the figure stays comparable with published STREAM results.
  return 24.0 * double(n) / best * 1e-9;
}

MachinePeak measure_machine_peak() {
  MachinePeak peak;
  peak.threads = omp_get_max_threads();
  peak.fma_isa = kIsa;
  peak.fma_gflops_one_thread = measure_fma_gflops(1);
  peak.fma_gflops_all_threads =
      peak.threads == 1 ? peak.fma_gflops_one_thread : measure_fma_gflops(peak.threads);
  // STREAM's rule: each array at least 4 times the last-level cache, so no run is served from
  // it. At least 64 MiB (the size when the cache is unknown), at most 512 MiB per array.
  peak.triad_bytes_per_array =
      std::clamp(4 * last_level_cache_bytes(), int64_t(64) << 20, int64_t(512) << 20);
  peak.triad_repeats = 10;
  peak.triad_gb_per_s = measure_triad_gb_per_s(peak.triad_bytes_per_array, peak.triad_repeats);
  return peak;
}

}  // namespace baleine::bench
