// Rotary position embedding (Su et al. 2021, "RoFormer", eq. 34): within each head the pair
// (x[2i], x[2i+1]) at sequence position p is rotated by the angle p · theta^(-2i/head_dim).
// The rotation is orthogonal, so the backward is the same rotation by the negative angle.
// The cos/sin table is built in double (seq · head_dim/2 entries), so float and double runs
// use the same correctly rounded angles. It depends only on (seq, head_dim, theta), which are
// the same for every call of a run, so each thread keeps the last one it built.
#include "kernels/rope.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/parallel_grain.h"

namespace baleine::kernels {
namespace {

// The cos/sin of every (position, pair) angle for one (seq, head_dim, theta); build() keeps
// the table when called again with the same three.
template <typename T>
struct RotationTable {
  int64_t seq = -1, head_dim = -1;
  T theta = T(0);
  std::vector<T> cos, sin;  // [seq][head_dim / 2]

  const RotationTable& build(int64_t new_seq, int64_t new_head_dim, T new_theta) {
    if (new_seq == seq && new_head_dim == head_dim && new_theta == theta) return *this;
    const int64_t half = new_head_dim / 2;
    cos.resize(size_t(new_seq * half));
    sin.resize(size_t(new_seq * half));
    for (int64_t i = 0; i < half; ++i) {
      const double inv_freq = std::pow(double(new_theta), -2.0 * double(i) / double(new_head_dim));
      for (int64_t p = 0; p < new_seq; ++p) {
        const double angle = double(p) * inv_freq;
        cos[size_t(p * half + i)] = T(std::cos(angle));
        sin[size_t(p * half + i)] = T(std::sin(angle));
      }
    }
    seq = new_seq;
    head_dim = new_head_dim;
    theta = new_theta;
    return *this;
  }
};

// sign = +1 rotates forward, −1 rotates back. Reads both members of a pair before writing, so
// `in` and `out` may alias.
template <typename T>
void rotate_pairs(const T* in, T* out, int64_t batch, int64_t seq, int64_t heads,
                  int64_t head_dim, T theta, T sign) {
  const int64_t half = head_dim / 2;
  thread_local RotationTable<T> table;
  const RotationTable<T>& angles = table.build(seq, head_dim, theta);
  const T* cos_table = angles.cos.data();
  const T* sin_table = angles.sin.data();
  const int64_t rows = batch * seq;
#pragma omp parallel for schedule(static) if (rows * heads * head_dim > kParallelGrain)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t p = row % seq;
    const T* c = cos_table + p * half;
    const T* s = sin_table + p * half;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t base = (row * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const T x0 = in[base + 2 * i], x1 = in[base + 2 * i + 1];
        const T sn = sign * s[i];
        out[base + 2 * i] = c[i] * x0 - sn * x1;
        out[base + 2 * i + 1] = sn * x0 + c[i] * x1;
      }
    }
  }
}

}  // namespace

template <typename T>
void rope_forward(const T* x, T* y, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                  T theta) {
  rotate_pairs(x, y, batch, seq, heads, head_dim, theta, T(1));
}

template <typename T>
void rope_backward(const T* dy, T* dx, int64_t batch, int64_t seq, int64_t heads,
                   int64_t head_dim, T theta) {
  rotate_pairs(dy, dx, batch, seq, heads, head_dim, theta, T(-1));
}

template void rope_forward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t,
                                  float);
template void rope_forward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t,
                                   double);
template void rope_backward<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t,
                                   float);
template void rope_backward<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t,
                                    double);

}  // namespace baleine::kernels
