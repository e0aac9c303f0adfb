// CPU kernels of the memory-bound plane passes (split, combine, copy_parts; see common/planes.h),
// and the pieces other plane-shaped passes share with them (the fused Gaussian layers' noise
// recombination, cpu/reparam.cpp): the parallel walk over rows and column blocks, and the planes'
// pointers.
#pragma once
#include <algorithm>
#include <cstdint>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "common/planes.h"

namespace cplxfast::cpu {

const PlaneKernels& plane_kernels();

// Enough columns per task that waking a second thread pays for itself.
inline int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)); }

// Long rows are cut into blocks of this many columns, so that a few long rows (a conv's
// [batch, channels x pixels] planes) still spread over all threads.
constexpr int64_t kColBlock = 8192;

// f(r, c0, c1) over every row r and column block [c0, c1), in parallel.
template <typename F>
void for_each_row_block(int64_t rows, int64_t cols, const F& f) {
  const int64_t blocks = std::max<int64_t>(1, (cols + kColBlock - 1) / kColBlock);
  const int64_t width = blocks == 1 ? cols : kColBlock;
  at::parallel_for(0, rows * blocks, blocks == 1 ? row_grain(cols) : 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = i / blocks, c0 = (i - r * blocks) * width;
      f(r, c0, std::min(cols, c0 + width));
    }
  });
}

// Base pointers and row strides of 2, 3 or 4 planes (column stride 1).
template <typename T>
struct PlanePtrs {
  T* data[4] = {nullptr, nullptr, nullptr, nullptr};
  int64_t row[4] = {0, 0, 0, 0};
  int64_t count;
  explicit PlanePtrs(at::TensorList planes) : count(static_cast<int64_t>(planes.size())) {
    TORCH_INTERNAL_ASSERT(count >= 2 && count <= 4);
    for (int64_t j = 0; j < count; ++j) {
      TORCH_INTERNAL_ASSERT(planes[j].dim() == 2 && (planes[j].size(1) <= 1 || planes[j].stride(1) == 1));
      data[j] = static_cast<T*>(planes[j].data_ptr());
      row[j] = planes[j].stride(0);
    }
  }
  T* at(int64_t j, int64_t r, int64_t c) const { return data[j] + r * row[j] + c; }
};

}  // namespace cplxfast::cpu
