#include "trainer/model/expert_wire.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace baleine::model {

namespace k = baleine::kernels;

int64_t fp8_wire_row_bytes(int64_t dim, int64_t tile) { return dim + (dim + tile - 1) / tile; }

template <typename T>
void encode_fp8_rows(const T* rows, int64_t n, int64_t dim, int64_t tile, k::Fp8Format format,
                     k::Array<uint8_t>& wire) {
  const int64_t tiles = (dim + tile - 1) / tile, row_bytes = dim + tiles;
  wire.resize(static_cast<size_t>(std::max<int64_t>(n * row_bytes, 1)));
  k::Fp8ScaleOptions options;
  options.format = format;
  options.power_of_two = true;
  thread_local k::Fp8Matrix q;
  k::fp8_quantize(rows, n, dim, {1, tile}, options, &q);
  for (int64_t r = 0; r < n; ++r) {
    uint8_t* out = wire.data() + r * row_bytes;
    std::memcpy(out, q.codes.data() + r * dim, static_cast<size_t>(dim));
    for (int64_t t = 0; t < tiles; ++t) {
      out[dim + t] = static_cast<uint8_t>(static_cast<int8_t>(std::ilogb(q.scales[r * tiles + t])));
    }
  }
}

void decode_fp8_rows(const uint8_t* wire, int64_t n, int64_t dim, int64_t tile,
                     k::Fp8Format format, k::Fp8Matrix* out) {
  const int64_t tiles = (dim + tile - 1) / tile, row_bytes = dim + tiles;
  out->rows = n;
  out->cols = dim;
  out->tile = {1, tile};
  out->format = format;
  out->codes.resize(static_cast<size_t>(n * dim));
  out->scales.resize(static_cast<size_t>(n * tiles));
  for (int64_t r = 0; r < n; ++r) {
    const uint8_t* in = wire + r * row_bytes;
    std::memcpy(out->codes.data() + r * dim, in, static_cast<size_t>(dim));
    for (int64_t t = 0; t < tiles; ++t) {
      out->scales[r * tiles + t] = std::ldexp(1.0f, static_cast<int8_t>(in[dim + t]));
    }
  }
}

template <typename T>
void encode_bf16_rows(const T* rows, int64_t n, int64_t dim, k::Array<uint8_t>& wire) {
  const int64_t count = n * dim;
  wire.resize(static_cast<size_t>(std::max<int64_t>(2 * count, 1)));
  for (int64_t i = 0; i < count; ++i) {
    const uint16_t b = k::bf16_encode(static_cast<float>(rows[i]));
    std::memcpy(wire.data() + 2 * i, &b, 2);
  }
}

template <typename T>
void decode_bf16_rows(const uint8_t* wire, int64_t n, int64_t dim, T* rows) {
  const int64_t count = n * dim;
  for (int64_t i = 0; i < count; ++i) {
    uint16_t b;
    std::memcpy(&b, wire + 2 * i, 2);
    rows[i] = static_cast<T>(k::bf16_decode(b));
  }
}

#define BALEINE_INSTANTIATE(T)                                                                 \
  template void encode_fp8_rows<T>(const T*, int64_t, int64_t, int64_t, k::Fp8Format,         \
                                   k::Array<uint8_t>&);                                     \
  template void encode_bf16_rows<T>(const T*, int64_t, int64_t, k::Array<uint8_t>&);       \
  template void decode_bf16_rows<T>(const uint8_t*, int64_t, int64_t, T*);
BALEINE_INSTANTIATE(float)
BALEINE_INSTANTIATE(double)
#undef BALEINE_INSTANTIATE

}  // namespace baleine::model
