// CPU kernels for the two memory-bound passes of the fused 3M GEMM (see common/gemm3m.h):
// rows in parallel (at::parallel_for), plain inner loops over columns that the compiler
// vectorises (-O3); no ATen calls inside the loops.
#include "cpu/planes.h"

#include <algorithm>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/util/complex.h>

namespace cplxfast::cpu {
namespace {

// Enough columns per task that waking a second thread pays for itself.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)); }

template <typename T>
void split_rows(const T* s, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride,
                T sgn, T* p0, T* p1, T* p2) {
  // s, row_stride, col_stride are in units of T over interleaved (re, im) pairs.
  at::parallel_for(0, rows, row_grain(cols), [&](int64_t r_begin, int64_t r_end) {
    for (int64_t r = r_begin; r < r_end; ++r) {
      const T* __restrict__ in = s + r * row_stride;
      T* __restrict__ o0 = p0 + r * cols;
      T* __restrict__ o1 = p1 + r * cols;
      T* __restrict__ o2 = p2 + r * cols;
      if (col_stride == 2) {  // contiguous row: let the compiler vectorise the de-interleave
        for (int64_t c = 0; c < cols; ++c) {
          const T re = in[2 * c], im = sgn * in[2 * c + 1];
          o0[c] = re;
          o1[c] = im;
          o2[c] = re + im;
        }
      } else {
        for (int64_t c = 0; c < cols; ++c) {
          const T re = in[c * col_stride], im = sgn * in[c * col_stride + 1];
          o0[c] = re;
          o1[c] = im;
          o2[c] = re + im;
        }
      }
    }
  });
}

template <typename T>
void combine_rows(const T* P, const T* bias, int64_t rows, int64_t cols, T* out,
                  int64_t row_stride, int64_t col_stride) {
  const T* P0 = P;
  const T* P1 = P + rows * cols;
  const T* P2 = P + 2 * rows * cols;
  at::parallel_for(0, rows, row_grain(cols), [&](int64_t r_begin, int64_t r_end) {
    for (int64_t r = r_begin; r < r_end; ++r) {
      const T* __restrict__ q0 = P0 + r * cols;
      const T* __restrict__ q1 = P1 + r * cols;
      const T* __restrict__ q2 = P2 + r * cols;
      T* __restrict__ o = out + r * row_stride;
      if (bias != nullptr) {
        for (int64_t c = 0; c < cols; ++c) {
          const T a = q0[c], b = q1[c];
          o[c * col_stride] = a - b + bias[2 * c];
          o[c * col_stride + 1] = q2[c] - a - b + bias[2 * c + 1];
        }
      } else {
        for (int64_t c = 0; c < cols; ++c) {
          const T a = q0[c], b = q1[c];
          o[c * col_stride] = a - b;
          o[c * col_stride + 1] = q2[c] - a - b;
        }
      }
    }
  });
}

}  // namespace

void split_planes(const at::Tensor& s, bool conj, const at::Tensor& planes) {
  const int64_t rows = s.size(0), cols = s.size(1);
  AT_DISPATCH_FLOATING_TYPES(planes.scalar_type(), "cplxfast_split_planes_cpu", [&] {
    const scalar_t* src = reinterpret_cast<const scalar_t*>(s.data_ptr());
    scalar_t* p = planes.data_ptr<scalar_t>();
    split_rows<scalar_t>(src, rows, cols, 2 * s.stride(0), 2 * s.stride(1), conj ? -1 : 1,
                         p, p + rows * cols, p + 2 * rows * cols);
  });
}

void combine_planes(const at::Tensor& products, const at::Tensor& bias, const at::Tensor& out) {
  const int64_t rows = out.size(0), cols = out.size(1);
  const at::Tensor b = bias.defined() ? bias.contiguous() : bias;
  AT_DISPATCH_FLOATING_TYPES(products.scalar_type(), "cplxfast_combine_planes_cpu", [&] {
    const scalar_t* bp = b.defined() ? reinterpret_cast<const scalar_t*>(b.data_ptr()) : nullptr;
    combine_rows<scalar_t>(products.data_ptr<scalar_t>(), bp, rows, cols,
                           reinterpret_cast<scalar_t*>(out.data_ptr()), 2 * out.stride(0),
                           2 * out.stride(1));
  });
}

}  // namespace cplxfast::cpu
