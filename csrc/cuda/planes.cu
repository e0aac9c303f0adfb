// CUDA kernels for the two memory-bound passes of the fused 3M GEMM (see common/planes.h).
// One element per thread, grid-stride loops, 32-bit indices where the matrix allows; plane reads
// and writes are coalesced, and an interleaved complex operand is read and written as whole
// (re, im) pairs (8-byte complex64 / 16-byte complex128 accesses) when the host finds its
// layout and alignment allow it.
#include "cuda/planes.h"
#include "common/layout.h"
#include "cuda/kernel_utils.cuh"

#include <cstdint>

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

namespace cplxfast::cuda {
namespace {

// Whether (re, im) can be accessed as whole pairs: adjacent parts of an interleaved complex
// matrix, and every pair 2 * sizeof(T) aligned. Interleaved (re, im) views of a real buffer at
// an odd offset or with an odd row stride (e.g. buf[1:].view(rows, 2 * cols)[:, 0::2] and
// [:, 1::2] of a real tensor) look interleaved but are not aligned: they take two scalar
// accesses per element, as on the CPU.
template <typename T>
bool pairs_of(const View<T>& re, const View<T>& im, int64_t rows) {
  return im.data == re.data + 1 && re.col_stride == 2 && im.col_stride == 2 && re.row_stride == im.row_stride &&
         reinterpret_cast<std::uintptr_t>(re.data) % (2 * sizeof(T)) == 0 && (rows <= 1 || re.row_stride % 2 == 0);
}

// Element (r, c) of the pair (re, im), without its neg-bit signs.
template <typename T>
__device__ __forceinline__ void load(const View<T>& re, const View<T>& im, bool pairs, int64_t r, int64_t c, T& a, T& b) {
  if (pairs) {
    const Pair<T> v = *reinterpret_cast<const Pair<T>*>(re.data + r * re.row_stride + 2 * c);
    a = v.re;
    b = v.im;
  } else {
    a = re.data[r * re.row_stride + c * re.col_stride];
    b = im.data[r * im.row_stride + c * im.col_stride];
  }
}

template <typename T>
__device__ __forceinline__ T scale_at(const View<T>& m, int64_t r, int64_t c) {
  return m.data != nullptr ? m.data[r * m.row_stride + c] : T(1);
}

// x * y rounded on its own: never contracted with a following add into an FMA (nvcc fuses by
// default), so a scaled part and the 3M sum of scaled parts round as on the CPU and in torch.
__device__ __forceinline__ float mul_rn(float x, float y) { return __fmul_rn(x, y); }
__device__ __forceinline__ double mul_rn(double x, double y) { return __dmul_rn(x, y); }

// Three planes: 3M (with the sum plane); four: 3M and |s|^2 (the Gaussian layers' modulus plane,
// of an unscaled s); two: the 4M planes (re, im). U: the planes' dtype, T or
// (mixed precision) a 16-bit float that each plane is rounded to once, the sum plane after the sum.
template <typename T, typename U, typename I>
__global__ void split_kernel(View<T> re, View<T> im, bool pairs, T sim, View<T> m, I n, I cols, PlanePtrs<U> ps) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - I(r) * cols;
    T a, b;
    load(re, im, pairs, r, c, a, b);
    const T scale = scale_at(m, r, c);
    a = mul_rn(a, re.sign * scale);
    b = mul_rn(b, sim * scale);
    ps.data[0][r * ps.row[0] + c] = static_cast<U>(a);
    ps.data[1][r * ps.row[1] + c] = static_cast<U>(b);
    if (ps.count >= 3) ps.data[2][r * ps.row[2] + c] = static_cast<U>(a + b);
    if (ps.count == 4) ps.data[3][r * ps.row[3] + c] = static_cast<U>(mul_rn(a, a) + mul_rn(b, b));
  }
}

// Three products: (P0 - P1) + i (P2 - P0 - P1); two: P0 + i P1.
template <typename T, typename I>
__global__ void combine_kernel(PlanePtrs<T> ps, View<T> bre, View<T> bim, I n, I cols, View<T> re, View<T> im,
                               bool pairs, View<T> m) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - I(r) * cols;
    const T a = ps.data[0][r * ps.row[0] + c], b = ps.data[1][r * ps.row[1] + c];
    const bool gauss = ps.count == 3;
    T out_re = gauss ? a - b : a, out_im = gauss ? ps.data[2][r * ps.row[2] + c] - a - b : b;
    if (bre.data != nullptr) {
      out_re += bre.sign * bre.data[c * bre.col_stride];
      out_im += bim.sign * bim.data[c * bim.col_stride];
    }
    const T scale = scale_at(m, r, c);
    out_re *= scale;
    out_im *= scale;
    if (pairs) {
      *reinterpret_cast<Pair<T>*>(re.data + r * re.row_stride + 2 * c) = Pair<T>{out_re, out_im};
    } else {
      re.data[r * re.row_stride + c * re.col_stride] = out_re;
      im.data[r * im.row_stride + c * im.col_stride] = out_im;
    }
  }
}

template <typename T, typename I>
__global__ void copy_parts_kernel(View<T> re, View<T> im, bool pairs, I n, I cols, View<T> o_re, View<T> o_im,
                                  View<T> m) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - I(r) * cols;
    T a, b;
    load(re, im, pairs, r, c, a, b);
    const T scale = scale_at(m, r, c);
    o_re.data[r * o_re.row_stride + c * o_re.col_stride] = re.sign * scale * a;
    o_im.data[r * o_im.row_stride + c * o_im.col_stride] = im.sign * scale * b;
  }
}


void copy_parts(const ComplexPair& src, const ComplexPair& dst) {
  const int64_t rows = src.re.size(0), cols = src.re.size(1), n = rows * cols;
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(dst.re.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(dst.re.scalar_type(), "cplxfast_copy_parts_cuda", [&] {
    const View<scalar_t> re = view_of<scalar_t>(src.re), im = view_of<scalar_t>(src.im);
    with_index_type(n, [&](auto index) {
      using I = decltype(index);
      copy_parts_kernel<scalar_t, I><<<grid_for(n), kThreads, 0, stream>>>(
          re, im, pairs_of(re, im, rows), I(n), I(cols), view_of<scalar_t>(dst.re), view_of<scalar_t>(dst.im),
          scale_of<scalar_t>(dst));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

template <typename T, typename U>
void launch_split(const ComplexPair& s, bool conj, at::TensorList planes) {
  const int64_t rows = s.re.size(0), cols = s.re.size(1), n = rows * cols;
  const View<T> re = view_of<T>(s.re), im = view_of<T>(s.im);
  with_index_type(n, [&](auto index) {
    using I = decltype(index);
    split_kernel<T, U, I><<<grid_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        re, im, pairs_of(re, im, rows), conj ? -im.sign : im.sign, scale_of<T>(s), I(n), I(cols),
        plane_ptrs<U>(planes));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void split_planes(const ComplexPair& s, bool conj, at::TensorList planes) {
  if (s.re.numel() == 0) return;
  TORCH_INTERNAL_ASSERT(planes.size() < 4 || !s.scale.defined(), "the modulus plane is of an unscaled operand");
  const c10::cuda::CUDAGuard guard(planes[0].device());
  dispatch_split_types(s, planes, [&](auto t, auto u) {
    launch_split<decltype(t), decltype(u)>(s, conj, planes);
  });
}

void combine_planes(at::TensorList products, const ComplexPair& bias, const ComplexPair& out) {
  const int64_t rows = out.re.size(0), cols = out.re.size(1), n = rows * cols;
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(products[0].device());
  auto stream = at::cuda::getCurrentCUDAStream();
  TORCH_INTERNAL_ASSERT(products.size() <= 3);
  AT_DISPATCH_FLOATING_TYPES(products[0].scalar_type(), "cplxfast_combine_planes_cuda", [&] {
    using V = View<scalar_t>;
    const V none{nullptr, 0, 0, scalar_t(1)};
    const bool has_bias = bias.re.defined();
    TORCH_INTERNAL_ASSERT(!(has_bias && out.scale.defined()));
    const V re = view_of<scalar_t>(out.re), im = view_of<scalar_t>(out.im);
    with_index_type(n, [&](auto index) {
      using I = decltype(index);
      combine_kernel<scalar_t, I><<<grid_for(n), kThreads, 0, stream>>>(
          plane_ptrs<scalar_t>(products), has_bias ? view_of<scalar_t>(bias.re) : none,
          has_bias ? view_of<scalar_t>(bias.im) : none, I(n), I(cols), re, im, pairs_of(re, im, rows),
          scale_of<scalar_t>(out));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace

const PlaneKernels& plane_kernels() {
  static const PlaneKernels k{&split_planes, &combine_planes, &copy_parts};
  return k;
}

}  // namespace cplxfast::cuda
