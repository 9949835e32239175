// Expert-parallel dispatch + combine on CPU ranks, against a bare MPI_Alltoallv of the same
// bytes (issue 3: the framework's exchange should cost under 1.3x the bare exchange).
//
//   mpirun -np 4 build/dispatch_bench [tokens_per_rank=2048] [hidden=512] [experts=16] [top_k=2]
//
// Framework path, per iteration, exactly what MoeLayer::forward does around the experts:
//   build_expert_index + permute_tokens_forward (rows sorted by expert)
//   ExpertExchange::plan (alltoall of per-expert counts) + dispatch (alltoallv)
//   ExpertExchange::combine (alltoallv back) + combine_forward (weighted sum)
// Bare path: two MPI_Alltoallv calls (there and back) with the same counts, nothing else.
// Reported: median over iterations of the slowest rank's time, per phase too. The "exchange
// only" ratio leaves out the routing permutation and the weighted sum, which every MoE layer
// does with or without expert parallelism.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/moe_dispatch.h"
#include "parallel/comm.h"
#include "parallel/runtime.h"
#include "trainer/model/expert_exchange.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double slowest(double seconds) {
  double out = 0;
  MPI_Allreduce(&seconds, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  baleine::parallel::MpiRuntime mpi(&argc, &argv);
  const int64_t tokens = argc > 1 ? std::atoll(argv[1]) : 2048;
  const int64_t dim = argc > 2 ? std::atoll(argv[2]) : 512;
  const int64_t experts = argc > 3 ? std::atoll(argv[3]) : 16;
  const int64_t top_k = argc > 4 ? std::atoll(argv[4]) : 2;
  const int ranks = mpi.info().world, me = mpi.info().rank;
  if (experts % ranks != 0) {
    if (me == 0) std::fprintf(stderr, "experts (%lld) must divide over %d ranks\n",
                              static_cast<long long>(experts), ranks);
    return 2;
  }
  auto world = baleine::parallel::make_mpi_world(300.0);

  // Random routing: top_k distinct experts per token, uniform.
  std::mt19937_64 rng(1234 + static_cast<uint64_t>(me));
  std::vector<int32_t> chosen(static_cast<size_t>(tokens * top_k));
  std::vector<int32_t> all(static_cast<size_t>(experts));
  for (int64_t e = 0; e < experts; ++e) all[e] = static_cast<int32_t>(e);
  for (int64_t t = 0; t < tokens; ++t) {
    std::shuffle(all.begin(), all.end(), rng);
    std::copy_n(all.begin(), top_k, chosen.begin() + t * top_k);
  }
  const int64_t rows = tokens * top_k;
  std::vector<float> x(static_cast<size_t>(tokens * dim)), weights(static_cast<size_t>(rows), 0.5f);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  std::vector<int32_t> offsets(experts + 1), row_token(rows), assignment_row(rows);
  std::vector<float> xe(static_cast<size_t>(rows * dim)), y(static_cast<size_t>(tokens * dim));
  baleine::kernels::Array<float> local, back;
  baleine::model::ExpertExchange<float> exchange(world.get(), experts, dim);
  baleine::model::ExpertExchange<float>::Plan plan;

  const int iterations = 20, warmup = 3;
  std::vector<double> framework, bare;
  std::vector<double> phases[5];
  const char* phase_names[5] = {"index + permute", "plan (counts alltoall)", "dispatch",
                                "combine", "weighted combine"};
  std::vector<int> send_counts(ranks), send_offsets(ranks), recv_counts(ranks), recv_offsets(ranks);
  std::vector<float> recv;
  for (int it = 0; it < warmup + iterations; ++it) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now();
    baleine::kernels::build_expert_index(chosen.data(), tokens, top_k, experts, offsets.data(),
                                         row_token.data(), assignment_row.data());
    baleine::kernels::permute_tokens_forward(x.data(), row_token.data(), xe.data(), rows, dim);
    const double t_permute = now();
    exchange.plan(offsets.data(), plan);
    const double t_plan = now();
    const float* at_experts = exchange.dispatch(plan, xe.data(), local);
    const double t_dispatch = now();
    const float* returned = exchange.combine(plan, at_experts, back);
    const double t_combine = now();
    baleine::kernels::combine_forward(returned, weights.data(), assignment_row.data(), y.data(),
                                      tokens, top_k, dim);
    const double t_end = now();
    if (it >= warmup) {
      phases[0].push_back(slowest(t_permute - t0));
      phases[1].push_back(slowest(t_plan - t_permute));
      phases[2].push_back(slowest(t_dispatch - t_plan));
      phases[3].push_back(slowest(t_combine - t_dispatch));
      phases[4].push_back(slowest(t_end - t_combine));
    }
    const double framework_s = slowest(now() - t0);

    // The same bytes, bare: counts per peer from the same index.
    const int64_t per_rank = experts / ranks;
    int send_at = 0;
    for (int p = 0; p < ranks; ++p) {
      send_counts[p] = static_cast<int>((offsets[(p + 1) * per_rank] - offsets[p * per_rank]) * dim);
      send_offsets[p] = send_at;
      send_at += send_counts[p];
    }
    MPI_Alltoall(send_counts.data(), 1, MPI_INT, recv_counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
    int recv_at = 0;
    for (int p = 0; p < ranks; ++p) {
      recv_offsets[p] = recv_at;
      recv_at += recv_counts[p];
    }
    recv.resize(static_cast<size_t>(std::max(recv_at, 1)));
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = now();
    MPI_Alltoallv(xe.data(), send_counts.data(), send_offsets.data(), MPI_FLOAT, recv.data(),
                  recv_counts.data(), recv_offsets.data(), MPI_FLOAT, MPI_COMM_WORLD);
    MPI_Alltoallv(recv.data(), recv_counts.data(), recv_offsets.data(), MPI_FLOAT, xe.data(),
                  send_counts.data(), send_offsets.data(), MPI_FLOAT, MPI_COMM_WORLD);
    const double bare_s = slowest(now() - t0);
    if (it >= warmup) {
      framework.push_back(framework_s);
      bare.push_back(bare_s);
    }
  }
  if (me == 0) {
    const double bytes = 2.0 * static_cast<double>(rows * dim) * sizeof(float);  // there and back
    const double f = median(framework), b = median(bare);
    std::printf("dispatch+combine: %d ranks, %lld tokens/rank, hidden %lld, %lld experts, top-%lld"
                " (%.1f MB moved per rank per iteration)\n",
                ranks, static_cast<long long>(tokens), static_cast<long long>(dim),
                static_cast<long long>(experts), static_cast<long long>(top_k), bytes / 1e6);
    std::printf("  framework (permute + plan + alltoallv x2 + weighted combine):   %.3f ms\n", f * 1e3);
    std::printf("  bare MPI_Alltoallv x2 of the same bytes:                         %.3f ms\n", b * 1e3);
    std::printf("  ratio framework / bare: %.2f\n", f / b);
    const double exchange = median(phases[1]) + median(phases[2]) + median(phases[3]);
    std::printf("  ratio exchange only (plan + dispatch + combine) / bare: %.2f\n", exchange / b);
    for (int p = 0; p < 5; ++p) {
      std::printf("    %-24s %.3f ms\n", phase_names[p], median(phases[p]) * 1e3);
    }
  }
  return 0;
}
