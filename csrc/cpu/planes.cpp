// CPU kernels for the two memory-bound passes of the fused 3M GEMM (see common/planes.h):
// rows in parallel (at::parallel_for), plain inner loops over columns that the compiler
// vectorises (-O3; the common column strides, 2 for interleaved complex and 1 for planar real,
// are compile-time constants); no ATen calls inside the loops.
#include "cpu/planes.h"
#include "common/layout.h"
#include "cpu/vectorize.h"

#include <algorithm>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

namespace cplxfast::cpu {
namespace {

// Elements per task of a flat elementwise pass (same reasoning as row_grain).
constexpr int64_t kFlatGrain = 32768;

// kStride > 0: both views have that column stride, known at compile time. o2 == nullptr: the
// two-plane split (re, im) of the 4M path. U: the planes' dtype, T or (mixed precision) a 16-bit
// float that each plane is rounded to once, the sum plane after the sum.
// o3 != nullptr (with o2): also |s|^2, the modulus plane of the Gaussian layers' variance.
template <typename T, typename U, int kStride>
inline void split_row(const T* __restrict__ re, const T* __restrict__ im, int64_t re_cs, int64_t im_cs,
                      T sre, T sim, int64_t cols, U* __restrict__ o0, U* __restrict__ o1, U* __restrict__ o2,
                      U* __restrict__ o3) {
  const int64_t rs = kStride > 0 ? kStride : re_cs, is = kStride > 0 ? kStride : im_cs;
  if (o3 != nullptr) {
    for (int64_t c = 0; c < cols; ++c) {
      const T a = sre * re[c * rs], b = sim * im[c * is];
      o0[c] = static_cast<U>(a);
      o1[c] = static_cast<U>(b);
      o2[c] = static_cast<U>(a + b);
      o3[c] = static_cast<U>(a * a + b * b);
    }
    return;
  }
  if (o2 == nullptr) {
    for (int64_t c = 0; c < cols; ++c) {
      o0[c] = static_cast<U>(sre * re[c * rs]);
      o1[c] = static_cast<U>(sim * im[c * is]);
    }
    return;
  }
  for (int64_t c = 0; c < cols; ++c) {
    const T a = sre * re[c * rs], b = sim * im[c * is];
    o0[c] = static_cast<U>(a);
    o1[c] = static_cast<U>(b);
    o2[c] = static_cast<U>(a + b);
  }
}

// q2 == nullptr: the planes already are (re, im) (the 4M path); else the Gauss recombination.
template <typename T, int kStride>
inline void combine_row(const T* __restrict__ q0, const T* __restrict__ q1, const T* __restrict__ q2,
                        T* __restrict__ re, T* __restrict__ im, int64_t out_cs, int64_t cols) {
  const int64_t s = kStride > 0 ? kStride : out_cs;
  if (q2 == nullptr) {
    for (int64_t c = 0; c < cols; ++c) {
      re[c * s] = q0[c];
      im[c * s] = q1[c];
    }
    return;
  }
  for (int64_t c = 0; c < cols; ++c) {
    const T a = q0[c], b = q1[c];
    re[c * s] = a - b;
    im[c * s] = q2[c] - a - b;
  }
}

// The planes of scale * s for one row (a masked weight: the mask multiplies both parts here,
// so no masked copy of the weight is made). Weight-sized, so runtime strides.
template <typename T, typename U>
inline void split_scaled_row(const T* re, const T* im, int64_t re_cs, int64_t im_cs, T sre, T sim,
                             const T* __restrict__ m, int64_t cols, U* o0, U* o1, U* o2) {
  for (int64_t c = 0; c < cols; ++c) {
    const T a = sre * re[c * re_cs] * m[c], b = sim * im[c * im_cs] * m[c];
    o0[c] = static_cast<U>(a);
    o1[c] = static_cast<U>(b);
    if (o2 != nullptr) o2[c] = static_cast<U>(a + b);
  }
}

template <typename T, typename U>
void split_impl(const ComplexPair& s, bool conj, at::TensorList planes) {
  const int64_t rows = s.re.size(0), cols = s.re.size(1);
  const View<T> re = view_of<T>(s.re), im = view_of<T>(s.im), m = scale_of<T>(s);
  const T sim = conj ? -im.sign : im.sign;
  const PlanePtrs<U> ps(planes);
  TORCH_INTERNAL_ASSERT(ps.count < 4 || m.data == nullptr, "the modulus plane is of an unscaled operand");
  for_each_row_block(rows, cols, [&](int64_t r, int64_t c0, int64_t c1) {
    const T* a = re.data + r * re.row_stride + c0 * re.col_stride;
    const T* b = im.data + r * im.row_stride + c0 * im.col_stride;
    U* o0 = ps.at(0, r, c0);
    U* o1 = ps.at(1, r, c0);
    U* o2 = ps.count >= 3 ? ps.at(2, r, c0) : nullptr;
    U* o3 = ps.count == 4 ? ps.at(3, r, c0) : nullptr;
    const int64_t n = c1 - c0;
    if (m.data != nullptr) {
      split_scaled_row<T, U>(a, b, re.col_stride, im.col_stride, re.sign, sim, m.data + r * m.row_stride + c0, n, o0,
                             o1, o2);
    } else if (re.col_stride == 2 && im.col_stride == 2) {  // interleaved complex
      split_row<T, U, 2>(a, b, 2, 2, re.sign, sim, n, o0, o1, o2, o3);
    } else if (re.col_stride == 1 && im.col_stride == 1) {  // planar (a layer's weight)
      split_row<T, U, 1>(a, b, 1, 1, re.sign, sim, n, o0, o1, o2, o3);
    } else {
      split_row<T, U, 0>(a, b, re.col_stride, im.col_stride, re.sign, sim, n, o0, o1, o2, o3);
    }
  });
}

// o_re[c], o_im[c] *= m[c] over a row just written (still in L1): a masked weight's gradient.
template <typename T>
inline void scale_row(const T* __restrict__ m, int64_t cols, T* o_re, T* o_im, int64_t out_cs) {
  for (int64_t c = 0; c < cols; ++c) {
    o_re[c * out_cs] *= m[c];
    o_im[c * out_cs] *= m[c];
  }
}

template <typename T>
void combine_impl(at::TensorList products, const ComplexPair& bias, const ComplexPair& out) {
  const int64_t rows = out.re.size(0), cols = out.re.size(1);
  const View<T> re = view_of<T>(out.re), im = view_of<T>(out.im);
  TORCH_INTERNAL_ASSERT(re.col_stride == im.col_stride && re.sign == 1 && im.sign == 1);
  const PlanePtrs<T> ps(products);
  TORCH_INTERNAL_ASSERT(ps.count <= 3);
  const View<T> m = scale_of<T>(out);
  const bool has_bias = bias.re.defined();
  TORCH_INTERNAL_ASSERT(!(has_bias && m.data != nullptr));
  const View<T> bre = has_bias ? view_of<T>(bias.re) : View<T>{nullptr, 0, 0, 1};
  const View<T> bim = has_bias ? view_of<T>(bias.im) : View<T>{nullptr, 0, 0, 1};
  for_each_row_block(rows, cols, [&](int64_t r, int64_t c0, int64_t c1) {
    const T* q0 = ps.at(0, r, c0);
    const T* q1 = ps.at(1, r, c0);
    const T* q2 = ps.count == 3 ? ps.at(2, r, c0) : nullptr;
    T* o_re = re.data + r * re.row_stride + c0 * re.col_stride;
    T* o_im = im.data + r * im.row_stride + c0 * im.col_stride;
    const int64_t n = c1 - c0;
    if (re.col_stride == 2) {
      combine_row<T, 2>(q0, q1, q2, o_re, o_im, 2, n);
    } else if (re.col_stride == 1) {
      combine_row<T, 1>(q0, q1, q2, o_re, o_im, 1, n);
    } else {
      combine_row<T, 0>(q0, q1, q2, o_re, o_im, re.col_stride, n);
    }
    if (has_bias) {  // a second sweep over a row that is still in L1
      for (int64_t c = c0; c < c1; ++c) {
        o_re[(c - c0) * re.col_stride] += bre.sign * bre.data[c * bre.col_stride];
        o_im[(c - c0) * im.col_stride] += bim.sign * bim.data[c * bim.col_stride];
      }
    }
    if (m.data != nullptr) scale_row(m.data + r * m.row_stride + c0, n, o_re, o_im, re.col_stride);
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

// o_re[i] = sre z[2i], o_im[i] = sim z[2i+1]: de-interleaving a run of complex numbers. One
// source pointer (not two strided views), so that GCC sees the pairs and vectorises with
// shuffles; measured ~2x faster than copy_row on a 256x256 complex64 weight gradient.
template <typename T>
inline void deinterleave_run(const T* __restrict__ z, T sre, T sim, int64_t n, T* __restrict__ o_re,
                             T* __restrict__ o_im) {
  for (int64_t i = 0; i < n; ++i) {
    o_re[i] = sre * z[2 * i];
    o_im[i] = sim * z[2 * i + 1];
  }
}
CPLXFAST_VECTOR_CLONES void deinterleave_f32(const float* z, float sre, float sim, int64_t n, float* o_re, float* o_im) {
  deinterleave_run(z, sre, sim, n, o_re, o_im);
}
CPLXFAST_VECTOR_CLONES void deinterleave_f64(const double* z, double sre, double sim, int64_t n, double* o_re,
                                             double* o_im) {
  deinterleave_run(z, sre, sim, n, o_re, o_im);
}
inline void deinterleave(const float* z, float sre, float sim, int64_t n, float* o_re, float* o_im) {
  deinterleave_f32(z, sre, sim, n, o_re, o_im);
}
inline void deinterleave(const double* z, double sre, double sim, int64_t n, double* o_re, double* o_im) {
  deinterleave_f64(z, sre, sim, n, o_re, o_im);
}

template <typename T>
void copy_parts_impl(const ComplexPair& src, const ComplexPair& dst) {
  const int64_t rows = src.re.size(0), cols = src.re.size(1);
  const View<T> re = view_of<T>(src.re), im = view_of<T>(src.im);
  const View<T> o_re = view_of<T>(dst.re), o_im = view_of<T>(dst.im), m = scale_of<T>(dst);
  TORCH_INTERNAL_ASSERT(o_re.col_stride == 1 && o_im.col_stride == 1 && re.col_stride == im.col_stride);
  const bool interleaved = re.col_stride == 2 && im.data == re.data + 1 && re.row_stride == im.row_stride;
  if (interleaved && (rows == 1 || (re.row_stride == 2 * cols && o_re.row_stride == cols && o_im.row_stride == cols &&
                                    (m.data == nullptr || m.row_stride == cols)))) {
    // One dense complex matrix into two dense real ones: a flat run, split evenly over threads.
    at::parallel_for(0, rows * cols, kFlatGrain, [&](int64_t begin, int64_t end) {
      deinterleave(re.data + 2 * begin, re.sign, im.sign, end - begin, o_re.data + begin, o_im.data + begin);
      if (m.data != nullptr) scale_row(m.data + begin, end - begin, o_re.data + begin, o_im.data + begin, 1);
    });
    return;
  }
  at::parallel_for(0, rows, row_grain(cols), [&](int64_t r_begin, int64_t r_end) {
    for (int64_t r = r_begin; r < r_end; ++r) {
      const T* a = re.data + r * re.row_stride;
      const T* b = im.data + r * im.row_stride;
      T* x = o_re.data + r * o_re.row_stride;
      T* y = o_im.data + r * o_im.row_stride;
      if (interleaved) {
        deinterleave(a, re.sign, im.sign, cols, x, y);
      } else {
        copy_row<T, 0>(a, b, re.col_stride, re.sign, im.sign, cols, x, y);
      }
      if (m.data != nullptr) scale_row(m.data + r * m.row_stride, cols, x, y, 1);
    }
  });
}

void copy_parts(const ComplexPair& src, const ComplexPair& dst) {
  AT_DISPATCH_FLOATING_TYPES(dst.re.scalar_type(), "cplxfast_copy_parts_cpu", [&] { copy_parts_impl<scalar_t>(src, dst); });
}

void split_planes(const ComplexPair& s, bool conj, at::TensorList planes) {
  dispatch_split_types(s, planes, [&](auto t, auto u) {
    split_impl<decltype(t), decltype(u)>(s, conj, planes);
  });
}

void combine_planes(at::TensorList products, const ComplexPair& bias, const ComplexPair& out) {
  AT_DISPATCH_FLOATING_TYPES(products[0].scalar_type(), "cplxfast_combine_planes_cpu", [&] {
    combine_impl<scalar_t>(products, bias, out);
  });
}

}  // namespace

const PlaneKernels& plane_kernels() {
  static const PlaneKernels k{&split_planes, &combine_planes, &copy_parts};
  return k;
}

}  // namespace cplxfast::cpu
