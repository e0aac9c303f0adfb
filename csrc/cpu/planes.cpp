// CPU kernels for the two memory-bound passes of the fused 3M GEMM (see common/gemm3m.h):
// rows in parallel (at::parallel_for), plain inner loops over columns that the compiler
// vectorises (-O3; the common column strides, 2 for interleaved complex and 1 for planar real,
// are compile-time constants); no ATen calls inside the loops.
#include "cpu/planes.h"
#include "common/layout.h"

#include <algorithm>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

namespace cplxfast::cpu {
namespace {

// Enough columns per task that waking a second thread pays for itself.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)); }

// kStride > 0: both views have that column stride, known at compile time.
template <typename T, int kStride>
inline void split_row(const T* __restrict__ re, const T* __restrict__ im, int64_t re_cs, int64_t im_cs,
                      T sre, T sim, int64_t cols, T* __restrict__ o0, T* __restrict__ o1, T* __restrict__ o2) {
  const int64_t rs = kStride > 0 ? kStride : re_cs, is = kStride > 0 ? kStride : im_cs;
  for (int64_t c = 0; c < cols; ++c) {
    const T a = sre * re[c * rs], b = sim * im[c * is];
    o0[c] = a;
    o1[c] = b;
    o2[c] = a + b;
  }
}

template <typename T, int kStride>
inline void combine_row(const T* __restrict__ q0, const T* __restrict__ q1, const T* __restrict__ q2,
                        T* __restrict__ re, T* __restrict__ im, int64_t out_cs, int64_t cols) {
  const int64_t s = kStride > 0 ? kStride : out_cs;
  for (int64_t c = 0; c < cols; ++c) {
    const T a = q0[c], b = q1[c];
    re[c * s] = a - b;
    im[c * s] = q2[c] - a - b;
  }
}

template <typename T>
void split_impl(const ComplexPair& s, bool conj, const at::Tensor& planes) {
  const int64_t rows = s.re.size(0), cols = s.re.size(1);
  const View<T> re = view_of<T>(s.re), im = view_of<T>(s.im);
  const T sim = conj ? -im.sign : im.sign;
  T* p = planes.data_ptr<T>();
  at::parallel_for(0, rows, row_grain(cols), [&](int64_t r_begin, int64_t r_end) {
    for (int64_t r = r_begin; r < r_end; ++r) {
      const T* a = re.data + r * re.row_stride;
      const T* b = im.data + r * im.row_stride;
      T* o0 = p + r * cols;
      T* o1 = o0 + rows * cols;
      T* o2 = o1 + rows * cols;
      if (re.col_stride == 2 && im.col_stride == 2) {  // interleaved complex
        split_row<T, 2>(a, b, 2, 2, re.sign, sim, cols, o0, o1, o2);
      } else if (re.col_stride == 1 && im.col_stride == 1) {  // planar (a layer's weight)
        split_row<T, 1>(a, b, 1, 1, re.sign, sim, cols, o0, o1, o2);
      } else {
        split_row<T, 0>(a, b, re.col_stride, im.col_stride, re.sign, sim, cols, o0, o1, o2);
      }
    }
  });
}

template <typename T>
void combine_impl(const at::Tensor& products, const ComplexPair& bias, const ComplexPair& out) {
  const int64_t rows = out.re.size(0), cols = out.re.size(1);
  const View<T> re = view_of<T>(out.re), im = view_of<T>(out.im);
  TORCH_INTERNAL_ASSERT(re.col_stride == im.col_stride && re.sign == 1 && im.sign == 1);
  const T* P = products.data_ptr<T>();
  const bool has_bias = bias.re.defined();
  const View<T> bre = has_bias ? view_of<T>(bias.re) : View<T>{nullptr, 0, 0, 1};
  const View<T> bim = has_bias ? view_of<T>(bias.im) : View<T>{nullptr, 0, 0, 1};
  at::parallel_for(0, rows, row_grain(cols), [&](int64_t r_begin, int64_t r_end) {
    for (int64_t r = r_begin; r < r_end; ++r) {
      const T* q0 = P + r * cols;
      const T* q1 = q0 + rows * cols;
      const T* q2 = q1 + rows * cols;
      T* o_re = re.data + r * re.row_stride;
      T* o_im = im.data + r * im.row_stride;
      if (re.col_stride == 2) {
        combine_row<T, 2>(q0, q1, q2, o_re, o_im, 2, cols);
      } else if (re.col_stride == 1) {
        combine_row<T, 1>(q0, q1, q2, o_re, o_im, 1, cols);
      } else {
        combine_row<T, 0>(q0, q1, q2, o_re, o_im, re.col_stride, cols);
      }
      if (has_bias) {  // a second sweep over a row that is still in L1
        for (int64_t c = 0; c < cols; ++c) {
          o_re[c * re.col_stride] += bre.sign * bre.data[c * bre.col_stride];
          o_im[c * im.col_stride] += bim.sign * bim.data[c * bim.col_stride];
        }
      }
    }
  });
}

template <typename T, int kSrcStride>
inline void copy_row(const T* __restrict__ re, const T* __restrict__ im, int64_t src_cs, T sre, T sim, int64_t cols,
                     T* __restrict__ o_re, T* __restrict__ o_im) {
  const int64_t s = kSrcStride > 0 ? kSrcStride : src_cs;
  for (int64_t c = 0; c < cols; ++c) {
    o_re[c] = sre * re[c * s];
    o_im[c] = sim * im[c * s];
  }
}

template <typename T>
void copy_parts_impl(const ComplexPair& src, const ComplexPair& dst) {
  const int64_t rows = src.re.size(0), cols = src.re.size(1);
  const View<T> re = view_of<T>(src.re), im = view_of<T>(src.im);
  const View<T> o_re = view_of<T>(dst.re), o_im = view_of<T>(dst.im);
  TORCH_INTERNAL_ASSERT(o_re.col_stride == 1 && o_im.col_stride == 1 && re.col_stride == im.col_stride);
  at::parallel_for(0, rows, row_grain(cols), [&](int64_t r_begin, int64_t r_end) {
    for (int64_t r = r_begin; r < r_end; ++r) {
      const T* a = re.data + r * re.row_stride;
      const T* b = im.data + r * im.row_stride;
      T* x = o_re.data + r * o_re.row_stride;
      T* y = o_im.data + r * o_im.row_stride;
      if (re.col_stride == 2) {
        copy_row<T, 2>(a, b, 2, re.sign, im.sign, cols, x, y);
      } else {
        copy_row<T, 0>(a, b, re.col_stride, re.sign, im.sign, cols, x, y);
      }
    }
  });
}

}  // namespace

void copy_parts(const ComplexPair& src, const ComplexPair& dst) {
  AT_DISPATCH_FLOATING_TYPES(dst.re.scalar_type(), "cplxfast_copy_parts_cpu", [&] { copy_parts_impl<scalar_t>(src, dst); });
}

void split_planes(const ComplexPair& s, bool conj, const at::Tensor& planes) {
  AT_DISPATCH_FLOATING_TYPES(planes.scalar_type(), "cplxfast_split_planes_cpu", [&] {
    split_impl<scalar_t>(s, conj, planes);
  });
}

void combine_planes(const at::Tensor& products, const ComplexPair& bias, const ComplexPair& out) {
  AT_DISPATCH_FLOATING_TYPES(products.scalar_type(), "cplxfast_combine_planes_cpu", [&] {
    combine_impl<scalar_t>(products, bias, out);
  });
}

}  // namespace cplxfast::cpu
