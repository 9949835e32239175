// Micro-benchmarks of the CPU kernels (kernels/*.h) at the shapes the training configs run, each
// read against what this machine measurably can do (bench/machine_peak.h). Issue 9.
//
//   ninja -C build kernels_bench
//   OMP_NUM_THREADS=2 build/kernels_bench                                  # everything
//   OMP_NUM_THREADS=1 build/kernels_bench --benchmark_filter='^gemm/'      # one family
//   OMP_NUM_THREADS=2 build/kernels_bench --benchmark_min_time=0.1         # quicker
//   OMP_NUM_THREADS=2 build/kernels_bench --peak_only                      # the peaks alone
//
// At start it measures the FP32 FMA peak (one thread, and OMP_NUM_THREADS threads) and the STREAM
// triad bandwidth (OMP_NUM_THREADS threads), prints them in the context block, then runs every
// kernel with the threads OpenMP gives it (OMP_NUM_THREADS). Kernel times are wall clock
// (UseRealTime); the CPU column is the whole process's, so CPU/Time is the number of cores it
// kept busy (below the thread count when other processes share the cores, or threads idle).
// The FMA peak is per CPU time actually run (bench/machine_peak.h), so on a shared machine the
// kernels' wall-clock fractions of it come out low: compare runs on a quiet machine.
//
// Shapes, per micro-batch:
//   quickstart  configs/quickstart.yaml: 2 x 128 tokens, hidden 96, 4 heads of 24, dense
//               intermediate 256, 8 routed experts of width 96 + 1 shared, top-2 (~64 rows per
//               expert), vocabulary 257.
//   larger      4 x 256 tokens, hidden 256, 4 heads of 64, intermediate 512, 16 routed experts
//               of width 512 + 1 shared, top-2 (~128 rows per expert), vocabulary 257.
// A Linear y = x·Wᵀ (x [tokens, in], W [out, in]) runs three GEMMs: fprop y [tokens, out],
// dgrad dx = dy·W [tokens, in], wgrad dW += dyᵀ·x [out, in] (trans_a, accumulated). The shared
// expert has the shapes of attn_qkvo (quickstart) and dense_gate_up (larger), so is not repeated.
//
// Counters (per call; n elements, T tokens, d hidden, k top-k, E experts, R = T·k rows, V vocab,
// b·s·h·hd the attention tensor, 4-byte floats):
//   flops               FLOP/s of the nominal count below (exp, div, sqrt count as one flop).
//   bytes_per_second    the DATA-FLOW MINIMUM per second: every input element read once, every
//                       output element written once, an accumulated output read and written
//                       once, gathered rows counted once per distinct row. A kernel that makes
//                       two passes, or whose stores allocate lines first, moves more, so this is
//                       a lower bound on its traffic. Printed with binary prefixes (Gi = 2^30).
//   items_per_second    outputs for GEMM, tokens for per-token kernels, elements otherwise.
//   of_fma_peak         flops / FP32 FMA peak at the same thread count (GEMM and attention:
//                       the compute-bound kernels). 1 = every FMA unit busy every cycle.
//   of_triad            bytes / triad bandwidth (10^9-based), for the memory-bound rest. The
//                       triad streams from DRAM; most of these working sets fit in L2 or L3, so
//                       a value above 1 is possible and only says the kernel is not DRAM-bound
//                       at that shape, not how near it is to its own (cache) ceiling. From DRAM
//                       too: the triad's store to a[] costs a hidden line read (write-allocate,
//                       32 bytes moved per 24 counted), which an in-place update (AdamW) avoids.
//
//   kernel                 flops                         bytes
//   gemm / Linear          2·M·N·K                       4·(MK + KN + MN), +4·MN if accumulated
//   attention_forward      2·b·h·s²·hd (causal: half     4·(3·bshd + bshd + bhs): q,k,v; out, lse
//                          of q·kᵀ and of p·v)
//   attention_backward     5·b·h·s²·hd (2.5x forward:    4·(4·bshd + bhs + 3·bshd)
//                          q·kᵀ recomputed, dv, dp, dq, dk; FlashAttention-2, Dao 2023, §4.1)
//   rmsnorm fwd / bwd      4·T·d / 10·T·d                4·(2Td + d + T) / 4·(3Td + 3d + T)
//   swiglu fwd / bwd       5·n / 11·n                    12·n / 20·n
//   rope fwd               3·n (6 per rotated pair)      8·n (tables built inside the call)
//   cross_entropy fwd/bwd  4·T·V / 3·T·V                 4·(TV + 2T) / 4·(2TV + 2T)
//   embedding fwd / bwd    0 / T·d                       4·(u·d + Td + T) / 4·(Td + 2u·d + T),
//                                                        u = distinct token ids
//   adamw (fp32 moments)   15·n                          28·n (param, m, v read+write; grad)
//   adamw (bf16 moments)   15·n                          20·n
//   routing_forward        0 (selection, not arithmetic) 4·(TE + E + TE + 2Tk)
//   build_expert_index     0                             4·(R + E + 1 + 2R)
//   permute fwd / bwd      0 / R·d                       4·(Td + Rd + R) / 4·(Rd + Td + R)
//   combine fwd / bwd      2·R·d / 3·R·d                 4·(Rd + 2R + Td) / 4·(Td + 2Rd + 3R)
//
// Inputs are random (fixed seeds, never all zeros); buffers are allocated before the timed loop.
// A kernel that allocates or builds tables inside itself (rope's angles) pays for it in the
// timed loop, as it does in training.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "bench/machine_peak.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/fp8.h"
#include "kernels/gemm.h"
#include "kernels/moe_dispatch.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/routing.h"
#include "kernels/swiglu.h"

namespace {

namespace k = baleine::kernels;
using baleine::bench::MachinePeak;

MachinePeak g_peak;  // measured once in main, before any benchmark runs

struct ModelShape {
  const char* name;
  int64_t batch, seq, hidden, heads, dense_intermediate, expert_width, experts, top_k, vocab;
  int64_t tokens() const { return batch * seq; }
  int64_t head_dim() const { return hidden / heads; }
  int64_t rows_per_expert() const { return tokens() * top_k / experts; }
  // One MoE block's parameters (attention, two norms, router, routed + 1 shared expert): what
  // one AdamW call over a block's weights updates.
  int64_t block_parameters() const {
    return 4 * hidden * hidden + 2 * hidden + hidden * experts +
           (experts + 1) * 3 * hidden * expert_width;
  }
};

constexpr ModelShape kQuickstart{"quickstart", 2, 128, 96, 4, 256, 96, 8, 2, 257};
constexpr ModelShape kLarger{"larger", 4, 256, 256, 4, 512, 512, 16, 2, 257};
constexpr ModelShape kShapes[] = {kQuickstart, kLarger};

enum class Ceiling { kFmaPeak, kTriad };

// What one call does, for the counters.
struct Work {
  double flops = 0;
  double bytes = 0;
  double items = 0;
  Ceiling ceiling = Ceiling::kTriad;
};

std::vector<float> random_floats(int64_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<float> zeros(int64_t n) { return std::vector<float>(static_cast<size_t>(n)); }
std::vector<int32_t> zero_ids(int64_t n) { return std::vector<int32_t>(static_cast<size_t>(n)); }

std::vector<int32_t> random_ids(int64_t n, int64_t bound, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(bound - 1));
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

// top_k distinct experts per token, uniform (a partial Fisher-Yates shuffle per token).
std::vector<int32_t> random_routing(int64_t tokens, int64_t top_k, int64_t experts,
                                    uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> all(static_cast<size_t>(experts)), chosen;
  std::iota(all.begin(), all.end(), 0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < top_k; ++j) {
      std::uniform_int_distribution<int64_t> pick(j, experts - 1);
      std::swap(all[size_t(j)], all[size_t(pick(rng))]);
      chosen.push_back(all[size_t(j)]);
    }
  }
  return chosen;
}

int64_t distinct(const std::vector<int32_t>& ids) {
  return static_cast<int64_t>(std::set<int32_t>(ids.begin(), ids.end()).size());
}

// Times `call` in the benchmark loop and sets the counters from `work`. The fraction of the
// ceiling uses this loop's own wall time (a rate counter would print it as "x/s").
template <typename Call>
void run(benchmark::State& state, const Work& work, Call&& call) {
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    call();
    benchmark::ClobberMemory();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double calls = double(state.iterations());
  state.SetItemsProcessed(static_cast<int64_t>(calls * work.items));
  state.SetBytesProcessed(static_cast<int64_t>(calls * work.bytes));
  if (work.flops > 0) {
    state.counters["flops"] =
        benchmark::Counter(work.flops, benchmark::Counter::kIsIterationInvariantRate);
  }
  if (seconds <= 0) return;
  if (work.ceiling == Ceiling::kFmaPeak) {
    const double peak = g_peak.fma_gflops_all_threads * 1e9;
    state.counters["of_fma_peak"] = calls * work.flops / seconds / peak;
  } else {
    const double peak = g_peak.triad_gb_per_s * 1e9;
    state.counters["of_triad"] = calls * work.bytes / seconds / peak;
  }
}

template <typename Body>
void add(const std::string& name, Body body) {
  benchmark::RegisterBenchmark(name.c_str(), body)->UseRealTime()->MeasureProcessCPUTime();
}

// ---- GEMM --------------------------------------------------------------------------------------

enum class LinearPass { kFprop, kDgrad, kWgrad };

void bench_linear(benchmark::State& state, LinearPass pass, int64_t tokens, int64_t in,
                  int64_t out) {
  const auto x = random_floats(tokens * in, 1), w = random_floats(out * in, 2);
  const auto dy = random_floats(tokens * out, 3);
  std::vector<float> y = zeros(tokens * out), dx = zeros(tokens * in);
  auto dw = random_floats(out * in, 4);
  Work work;
  work.ceiling = Ceiling::kFmaPeak;
  work.flops = 2.0 * double(tokens) * double(in) * double(out);
  const double operands = double(tokens * in + out * in + tokens * out);
  char label[96];
  switch (pass) {
    case LinearPass::kFprop:  // y [M=tokens, N=out] = x [tokens, in] · W [out, in]ᵀ
      work.bytes = 4 * operands;
      work.items = double(tokens * out);
      std::snprintf(label, sizeof label, "M=%lld N=%lld K=%lld", (long long)tokens,
                    (long long)out, (long long)in);
      state.SetLabel(label);
      run(state, work, [&] { k::linear_forward(x.data(), w.data(), y.data(), tokens, in, out); });
      break;
    case LinearPass::kDgrad:  // dx [M=tokens, N=in] = dy [tokens, out] · W [out, in]
      work.bytes = 4 * operands;
      work.items = double(tokens * in);
      std::snprintf(label, sizeof label, "M=%lld N=%lld K=%lld", (long long)tokens,
                    (long long)in, (long long)out);
      state.SetLabel(label);
      run(state, work,
          [&] { k::linear_backward_input(dy.data(), w.data(), dx.data(), tokens, in, out); });
      break;
    case LinearPass::kWgrad:  // dW [M=out, N=in] += dy [tokens, out]ᵀ · x [tokens, in]
      work.bytes = 4 * (operands + double(out * in));
      work.items = double(out * in);
      std::snprintf(label, sizeof label, "M=%lld N=%lld K=%lld", (long long)out, (long long)in,
                    (long long)tokens);
      state.SetLabel(label);
      run(state, work,
          [&] { k::linear_backward_weight(dy.data(), x.data(), dw.data(), tokens, in, out); });
      break;
  }
}

// C [M, N] = A [M, K] · B [K, N], both untransposed: the plain square-ish reference shapes.
void bench_gemm_nn(benchmark::State& state, int64_t m, int64_t n, int64_t kk) {
  const auto a = random_floats(m * kk, 5), b = random_floats(kk * n, 6);
  std::vector<float> c = zeros(m * n);
  Work work;
  work.ceiling = Ceiling::kFmaPeak;
  work.flops = 2.0 * double(m) * double(n) * double(kk);
  work.bytes = 4.0 * double(m * kk + kk * n + m * n);
  work.items = double(m * n);
  run(state, work, [&] {
    k::gemm<float>(false, false, m, n, kk, 1.0f, a.data(), kk, b.data(), n, 0.0f, c.data(), n);
  });
}

void register_gemm() {
  struct Linear {
    const char* layer;
    int64_t tokens, in, out;
  };
  for (const ModelShape& s : kShapes) {
    const int64_t t = s.tokens(), h = s.hidden, rows = s.rows_per_expert();
    const Linear linears[] = {
        {"attn_qkvo", t, h, h},
        {"dense_gate_up", t, h, s.dense_intermediate},
        {"dense_down", t, s.dense_intermediate, h},
        {"expert_gate_up", rows, h, s.expert_width},
        {"expert_down", rows, s.expert_width, h},
        {"router", t, h, s.experts},
        {"lm_head", t, h, s.vocab},
    };
    const std::pair<LinearPass, const char*> passes[] = {
        {LinearPass::kFprop, "fprop"},
        {LinearPass::kDgrad, "dgrad"},
        {LinearPass::kWgrad, "wgrad"}};
    for (const Linear& l : linears) {
      for (const auto& [pass, pass_name] : passes) {
        add(std::string("gemm/") + s.name + "/" + l.layer + "/" + pass_name,
            [l, pass = pass](benchmark::State& st) {
              bench_linear(st, pass, l.tokens, l.in, l.out);
            });
      }
    }
  }
  add("gemm/square/1024x1024x1024",
      [](benchmark::State& st) { bench_gemm_nn(st, 1024, 1024, 1024); });
  add("gemm/tall/2048x512x256", [](benchmark::State& st) { bench_gemm_nn(st, 2048, 512, 256); });
}

// ---- attention ---------------------------------------------------------------------------------

void bench_attention(benchmark::State& state, const ModelShape& s, bool backward) {
  const int64_t b = s.batch, seq = s.seq, h = s.heads, hd = s.head_dim();
  const int64_t n = b * seq * h * hd, rows = b * h * seq;
  const auto q = random_floats(n, 11), kk = random_floats(n, 12), v = random_floats(n, 13);
  const auto dout = random_floats(n, 14);
  std::vector<float> out = zeros(n), lse = zeros(rows);
  std::vector<float> dq = zeros(n), dk = zeros(n), dv = zeros(n);
  Work work;
  work.ceiling = Ceiling::kFmaPeak;
  work.items = double(b * seq);
  const double causal_products = double(b * h) * double(seq) * double(seq) * double(hd);
  if (!backward) {
    work.flops = 2 * causal_products;
    work.bytes = 4.0 * double(4 * n + rows);
    run(state, work, [&] {
      k::attention_forward(q.data(), kk.data(), v.data(), out.data(), lse.data(), b, seq, h, hd);
    });
    return;
  }
  k::attention_forward(q.data(), kk.data(), v.data(), out.data(), lse.data(), b, seq, h, hd);
  work.flops = 5 * causal_products;
  work.bytes = 4.0 * double(7 * n + rows);
  run(state, work, [&] {
    k::attention_backward(dout.data(), q.data(), kk.data(), v.data(), lse.data(), dq.data(),
                          dk.data(), dv.data(), b, seq, h, hd);
  });
}

// ---- elementwise and normalisation -------------------------------------------------------------

void bench_rmsnorm(benchmark::State& state, const ModelShape& s, bool backward) {
  const int64_t t = s.tokens(), d = s.hidden;
  const auto x = random_floats(t * d, 21), weight = random_floats(d, 22, 0.5f, 1.5f);
  const auto dy = random_floats(t * d, 23);
  std::vector<float> y = zeros(t * d), rstd = zeros(t), dx = zeros(t * d), dweight = zeros(d);
  k::rmsnorm_forward(x.data(), weight.data(), y.data(), rstd.data(), t, d, 1e-6f);
  Work work;
  work.items = double(t);
  if (!backward) {
    work.flops = 4.0 * double(t * d);
    work.bytes = 4.0 * double(2 * t * d + d + t);
    run(state, work, [&] {
      k::rmsnorm_forward(x.data(), weight.data(), y.data(), rstd.data(), t, d, 1e-6f);
    });
    return;
  }
  work.flops = 10.0 * double(t * d);
  work.bytes = 4.0 * double(3 * t * d + 3 * d + t);
  run(state, work, [&] {
    k::rmsnorm_backward(dy.data(), x.data(), weight.data(), rstd.data(), dx.data(),
                        dweight.data(), t, d);
  });
}

void bench_swiglu(benchmark::State& state, const ModelShape& s, bool backward) {
  const int64_t n = s.tokens() * s.dense_intermediate;
  const auto a = random_floats(n, 31, -4.0f, 4.0f), b = random_floats(n, 32);
  const auto dh = random_floats(n, 33);
  std::vector<float> h = zeros(n), da = zeros(n), db = zeros(n);
  Work work;
  work.items = double(n);
  if (!backward) {
    work.flops = 5.0 * double(n);
    work.bytes = 12.0 * double(n);
    run(state, work, [&] { k::swiglu_forward(a.data(), b.data(), h.data(), n); });
    return;
  }
  work.flops = 11.0 * double(n);
  work.bytes = 20.0 * double(n);
  run(state, work,
      [&] { k::swiglu_backward(dh.data(), a.data(), b.data(), da.data(), db.data(), n); });
}

void bench_rope(benchmark::State& state, const ModelShape& s) {
  const int64_t n = s.tokens() * s.hidden;
  const auto x = random_floats(n, 41);
  std::vector<float> y = zeros(n);
  Work work;
  work.items = double(n);
  work.flops = 3.0 * double(n);
  work.bytes = 8.0 * double(n);
  run(state, work, [&] {
    k::rope_forward(x.data(), y.data(), s.batch, s.seq, s.heads, s.head_dim(), 10000.0f);
  });
}

void bench_cross_entropy(benchmark::State& state, const ModelShape& s, bool backward) {
  const int64_t t = s.tokens(), vocab = s.vocab;
  const auto logits = random_floats(t * vocab, 51, -4.0f, 4.0f);
  const auto targets = random_ids(t, vocab, 52);
  std::vector<float> lse = zeros(t), dlogits = zeros(t * vocab);
  k::cross_entropy_forward(logits.data(), targets.data(), lse.data(), t, vocab);
  Work work;
  work.items = double(t);
  if (!backward) {
    work.flops = 4.0 * double(t * vocab);
    work.bytes = 4.0 * double(t * vocab + 2 * t);
    run(state, work, [&] {
      benchmark::DoNotOptimize(
          k::cross_entropy_forward(logits.data(), targets.data(), lse.data(), t, vocab));
    });
    return;
  }
  work.flops = 3.0 * double(t * vocab);
  work.bytes = 4.0 * double(2 * t * vocab + 2 * t);
  run(state, work, [&] {
    k::cross_entropy_backward(logits.data(), targets.data(), lse.data(), 1.0f / float(t),
                              dlogits.data(), t, vocab);
  });
}

void bench_embedding(benchmark::State& state, const ModelShape& s, bool backward) {
  const int64_t t = s.tokens(), d = s.hidden;
  const auto tokens = random_ids(t, s.vocab, 61);
  const auto table = random_floats(s.vocab * d, 62), dout = random_floats(t * d, 63);
  std::vector<float> out = zeros(t * d);
  auto dtable = random_floats(s.vocab * d, 64);
  const int64_t used_rows = distinct(tokens);
  Work work;
  work.items = double(t);
  if (!backward) {
    work.bytes = 4.0 * double(used_rows * d + t * d + t);
    run(state, work,
        [&] { k::embedding_forward(tokens.data(), table.data(), out.data(), t, d); });
    return;
  }
  work.flops = double(t * d);
  work.bytes = 4.0 * double(t * d + 2 * used_rows * d + t);
  run(state, work,
      [&] { k::embedding_backward(tokens.data(), dout.data(), dtable.data(), t, d); });
}

void bench_adamw(benchmark::State& state, const ModelShape& s, bool bf16_moments) {
  const int64_t n = s.block_parameters();
  auto param = random_floats(n, 71);
  const auto grad = random_floats(n, 72, -0.01f, 0.01f);
  k::AdamWStep step;
  step.lr = 1e-3f;
  step.weight_decay = 0.1f;
  step.step = 10;
  Work work;
  work.items = double(n);
  work.flops = 15.0 * double(n);
  if (!bf16_moments) {
    auto m = random_floats(n, 73, -0.01f, 0.01f), v = random_floats(n, 74, 1e-6f, 1e-4f);
    work.bytes = 28.0 * double(n);
    run(state, work, [&] {
      k::adamw_update(param.data(), grad.data(), m.data(), v.data(), n, step);
    });
    return;
  }
  const auto m32 = random_floats(n, 73, -0.01f, 0.01f), v32 = random_floats(n, 74, 1e-6f, 1e-4f);
  std::vector<uint16_t> m(static_cast<size_t>(n)), v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    m[size_t(i)] = k::bf16_encode(m32[size_t(i)]);
    v[size_t(i)] = k::bf16_encode(v32[size_t(i)]);
  }
  work.bytes = 20.0 * double(n);
  run(state, work, [&] {
    k::adamw_update_bf16_moments(param.data(), grad.data(), m.data(), v.data(), n, step);
  });
}

// ---- MoE routing and token movement ------------------------------------------------------------

void bench_routing(benchmark::State& state, const ModelShape& s) {
  const int64_t t = s.tokens(), e = s.experts, top = s.top_k;
  const auto logits = random_floats(t * e, 81, -2.0f, 2.0f);
  const auto bias = random_floats(e, 82, -0.1f, 0.1f);
  std::vector<float> scores = zeros(t * e), weights = zeros(t * top);
  std::vector<int32_t> chosen = zero_ids(t * top);
  Work work;
  work.items = double(t);
  work.bytes = 4.0 * double(2 * t * e + e + 2 * t * top);
  run(state, work, [&] {
    k::routing_forward(logits.data(), bias.data(), scores.data(), chosen.data(), weights.data(),
                       k::RoutingShape{t, e, top}, k::RoutingOptions{});
  });
}

enum class TokenMove {
  kIndex,
  kPermuteForward,
  kPermuteBackward,
  kCombineForward,
  kCombineBackward
};

void bench_token_move(benchmark::State& state, const ModelShape& s, TokenMove what) {
  const int64_t t = s.tokens(), top = s.top_k, e = s.experts, d = s.hidden, rows = t * top;
  const auto chosen = random_routing(t, top, e, 91);
  std::vector<int32_t> offsets = zero_ids(e + 1), row_token = zero_ids(rows);
  std::vector<int32_t> assignment_row = zero_ids(rows);
  k::build_expert_index(chosen.data(), t, top, e, offsets.data(), row_token.data(),
                        assignment_row.data());
  const auto x = random_floats(t * d, 92), rows_in = random_floats(rows * d, 93);
  const auto weights = random_floats(rows, 94, 0.1f, 1.0f), dy = random_floats(t * d, 95);
  std::vector<float> rows_out = zeros(rows * d), tokens_out = zeros(t * d);
  std::vector<float> dweights = zeros(rows);
  Work work;
  work.items = double(t);
  switch (what) {
    case TokenMove::kIndex:
      work.bytes = 4.0 * double(3 * rows + e + 1);
      run(state, work, [&] {
        k::build_expert_index(chosen.data(), t, top, e, offsets.data(), row_token.data(),
                              assignment_row.data());
      });
      break;
    case TokenMove::kPermuteForward:
      work.bytes = 4.0 * double(t * d + rows * d + rows);
      run(state, work, [&] {
        k::permute_tokens_forward(x.data(), row_token.data(), rows_out.data(), rows, d);
      });
      break;
    case TokenMove::kPermuteBackward:
      work.flops = double(rows * d);
      work.bytes = 4.0 * double(rows * d + t * d + rows);
      run(state, work, [&] {
        k::permute_tokens_backward(rows_in.data(), row_token.data(), tokens_out.data(), rows, t,
                                   d);
      });
      break;
    case TokenMove::kCombineForward:
      work.flops = 2.0 * double(rows * d);
      work.bytes = 4.0 * double(rows * d + 2 * rows + t * d);
      run(state, work, [&] {
        k::combine_forward(rows_in.data(), weights.data(), assignment_row.data(),
                           tokens_out.data(), t, top, d);
      });
      break;
    case TokenMove::kCombineBackward:
      work.flops = 3.0 * double(rows * d);
      work.bytes = 4.0 * double(t * d + 2 * rows * d + 3 * rows);
      run(state, work, [&] {
        k::combine_backward(dy.data(), rows_in.data(), weights.data(), assignment_row.data(),
                            rows_out.data(), dweights.data(), t, top, d);
      });
      break;
  }
}

void register_others() {
  for (const ModelShape& s : kShapes) {
    const std::string at = std::string("/") + s.name;
    add("attention_forward" + at, [s](benchmark::State& st) { bench_attention(st, s, false); });
    add("attention_backward" + at, [s](benchmark::State& st) { bench_attention(st, s, true); });
    add("rmsnorm_forward" + at, [s](benchmark::State& st) { bench_rmsnorm(st, s, false); });
    add("rmsnorm_backward" + at, [s](benchmark::State& st) { bench_rmsnorm(st, s, true); });
    add("swiglu_forward" + at, [s](benchmark::State& st) { bench_swiglu(st, s, false); });
    add("swiglu_backward" + at, [s](benchmark::State& st) { bench_swiglu(st, s, true); });
    add("rope_forward" + at, [s](benchmark::State& st) { bench_rope(st, s); });
    add("cross_entropy_forward" + at,
        [s](benchmark::State& st) { bench_cross_entropy(st, s, false); });
    add("cross_entropy_backward" + at,
        [s](benchmark::State& st) { bench_cross_entropy(st, s, true); });
    add("embedding_forward" + at, [s](benchmark::State& st) { bench_embedding(st, s, false); });
    add("embedding_backward" + at, [s](benchmark::State& st) { bench_embedding(st, s, true); });
    add("adamw_update" + at, [s](benchmark::State& st) { bench_adamw(st, s, false); });
    add("adamw_update_bf16_moments" + at,
        [s](benchmark::State& st) { bench_adamw(st, s, true); });
    add("routing_forward" + at, [s](benchmark::State& st) { bench_routing(st, s); });
    const std::pair<TokenMove, const char*> moves[] = {
        {TokenMove::kIndex, "build_expert_index"},
        {TokenMove::kPermuteForward, "permute_tokens_forward"},
        {TokenMove::kPermuteBackward, "permute_tokens_backward"},
        {TokenMove::kCombineForward, "combine_forward"},
        {TokenMove::kCombineBackward, "combine_backward"}};
    for (const auto& [what, name] : moves) {
      add(name + at, [s, what = what](benchmark::State& st) { bench_token_move(st, s, what); });
    }
  }
}

std::string fixed(double value, const char* unit) {
  char text[64];
  std::snprintf(text, sizeof text, "%.1f %s", value, unit);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  bool peak_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--peak_only") {
      peak_only = true;
    } else {
      std::fprintf(stderr, "kernels_bench: unknown argument '%s' (see bench/kernels_bench.cpp)\n",
                   argv[i]);
      return 2;
    }
  }
  g_peak = baleine::bench::measure_machine_peak();
  const std::string fma_one = fixed(g_peak.fma_gflops_one_thread, "GFLOP/s");
  const std::string fma_all = fixed(g_peak.fma_gflops_all_threads, "GFLOP/s") + " on " +
                              std::to_string(g_peak.threads) + " threads";
  const std::string triad = fixed(g_peak.triad_gb_per_s, "GB/s") + " (3 x " +
                            std::to_string(g_peak.triad_bytes_per_array >> 20) +
                            " MiB of doubles, 24 bytes per element, best of " +
                            std::to_string(g_peak.triad_repeats) + ")";
  if (peak_only) {
    std::printf("omp_threads: %d\nfp32_fma_isa: %s\nfp32_fma_peak_1_thread: %s\n"
                "fp32_fma_peak_all_threads: %s\ntriad_bandwidth: %s\n",
                g_peak.threads, g_peak.fma_isa.c_str(), fma_one.c_str(), fma_all.c_str(),
                triad.c_str());
    return 0;
  }
  benchmark::AddCustomContext("omp_threads", std::to_string(g_peak.threads));
  benchmark::AddCustomContext("fp32_fma_isa", g_peak.fma_isa);
  benchmark::AddCustomContext("fp32_fma_peak_1_thread", fma_one);
  benchmark::AddCustomContext("fp32_fma_peak_all_threads", fma_all);
  benchmark::AddCustomContext("triad_bandwidth", triad);
  register_gemm();
  register_others();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
