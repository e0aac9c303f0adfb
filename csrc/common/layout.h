// Small layout helpers shared by the CPU and CUDA kernels.
#pragma once
#include <ATen/core/Tensor.h>

namespace cplxfast {

// A real [rows, cols] (or [cols]) view as kernels read it: raw pointer, strides in elements,
// and the sign of its lazy neg bit (folded into the arithmetic instead of copying).
template <typename T>
struct View {
  T* data;
  int64_t row_stride, col_stride;
  T sign;
};

template <typename T>
View<T> view_of(const at::Tensor& t) {
  return {static_cast<T*>(t.data_ptr()), t.dim() == 2 ? t.stride(0) : 0, t.stride(t.dim() - 1),
          t.is_neg() ? T(-1) : T(1)};
}

// t itself if it has like's (dense) strides and no lazy conj/neg bit, else a copy with like's
// strides: kernels then read t and like with one flat index.
at::Tensor with_layout_of(const at::Tensor& t, const at::Tensor& like);

// An uninitialised tensor with like's sizes, strides and options.
at::Tensor empty_with_layout_of(const at::Tensor& like);

// Options for real, contiguous scratch or results of a (complex or real) tensor's precision.
inline at::TensorOptions real_options(const at::Tensor& t) {
  return t.options().dtype(c10::toRealValueType(t.scalar_type())).memory_format(at::MemoryFormat::Contiguous);
}

}  // namespace cplxfast
