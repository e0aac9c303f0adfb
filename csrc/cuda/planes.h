// CUDA kernels of the memory-bound plane passes (split, combine, copy_parts; see common/planes.h),
// and the planes' pointers that other plane-shaped kernels share with them (the fused Gaussian
// layers' noise recombination, cuda/reparam.cu).
#pragma once
#include <cstdint>

#include <ATen/core/Tensor.h>

#include "common/planes.h"

namespace cplxfast::cuda {

const PlaneKernels& plane_kernels();

// Base pointers and row strides of 2, 3 or 4 planes (column stride 1), passed by value.
template <typename T>
struct PlanePtrs {
  T* data[4];
  int64_t row[4];
  int count;
};

template <typename T>
PlanePtrs<T> plane_ptrs(at::TensorList planes) {
  TORCH_INTERNAL_ASSERT(planes.size() >= 2 && planes.size() <= 4);
  PlanePtrs<T> p{{nullptr, nullptr, nullptr, nullptr}, {0, 0, 0, 0}, static_cast<int>(planes.size())};
  for (int j = 0; j < p.count; ++j) {
    TORCH_INTERNAL_ASSERT(planes[j].dim() == 2 && (planes[j].size(1) <= 1 || planes[j].stride(1) == 1));
    p.data[j] = static_cast<T*>(planes[j].data_ptr());
    p.row[j] = planes[j].stride(0);
  }
  return p;
}

}  // namespace cplxfast::cuda
