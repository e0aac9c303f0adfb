// CUDA kernels for the two memory-bound passes of the fused 3M GEMM (see common/planes.h).
// One element per thread, 64-bit indexing, grid-stride loops; plane reads and writes are
// coalesced, and an interleaved complex operand is read and written as whole (re, im) pairs
// (8-byte complex64 / 16-byte complex128 accesses).
#include "cuda/planes.h"
#include "common/layout.h"

#include <algorithm>

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

namespace cplxfast::cuda {
namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) {
  const int64_t max_blocks = int64_t{at::cuda::getCurrentDeviceProperties()->multiProcessorCount} * 32;
  return std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, max_blocks));
}

template <typename T>
struct alignas(2 * sizeof(T)) Pair {
  T re, im;
};

// Interleaved complex: re and im are adjacent, so load/store the pair in one access.
template <typename T>
__device__ __forceinline__ bool interleaved(const View<T>& re, const View<T>& im) {
  return im.data == re.data + 1 && re.col_stride == 2 && im.col_stride == 2 && re.row_stride == im.row_stride;
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

// Base pointers and row strides of 2 or 3 planes (column stride 1), passed by value.
template <typename T>
struct PlanePtrs {
  T* data[3];
  int64_t row[3];
  int count;
};

template <typename T>
PlanePtrs<T> plane_ptrs(at::TensorList planes) {
  TORCH_INTERNAL_ASSERT(planes.size() == 2 || planes.size() == 3);
  PlanePtrs<T> p{{nullptr, nullptr, nullptr}, {0, 0, 0}, static_cast<int>(planes.size())};
  for (int j = 0; j < p.count; ++j) {
    TORCH_INTERNAL_ASSERT(planes[j].dim() == 2 && (planes[j].size(1) <= 1 || planes[j].stride(1) == 1));
    p.data[j] = static_cast<T*>(planes[j].data_ptr());
    p.row[j] = planes[j].stride(0);
  }
  return p;
}

// Three planes: 3M (with the sum plane); two: the 4M planes (re, im).
template <typename T>
__global__ void split_kernel(View<T> re, View<T> im, T sim, int64_t rows, int64_t cols, PlanePtrs<T> ps) {
  const int64_t n = rows * cols;
  const bool pairs = interleaved(re, im);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    T a, b;
    load(re, im, pairs, r, c, a, b);
    a *= re.sign;
    b *= sim;
    ps.data[0][r * ps.row[0] + c] = a;
    ps.data[1][r * ps.row[1] + c] = b;
    if (ps.count == 3) ps.data[2][r * ps.row[2] + c] = a + b;
  }
}

// Three products: (P0 - P1) + i (P2 - P0 - P1); two: P0 + i P1.
template <typename T>
__global__ void combine_kernel(PlanePtrs<T> ps, View<T> bre, View<T> bim, int64_t rows, int64_t cols, View<T> re,
                               View<T> im) {
  const int64_t n = rows * cols;
  const bool pairs = interleaved(re, im);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    const T a = ps.data[0][r * ps.row[0] + c], b = ps.data[1][r * ps.row[1] + c];
    const bool gauss = ps.count == 3;
    T out_re = gauss ? a - b : a, out_im = gauss ? ps.data[2][r * ps.row[2] + c] - a - b : b;
    if (bre.data != nullptr) {
      out_re += bre.sign * bre.data[c * bre.col_stride];
      out_im += bim.sign * bim.data[c * bim.col_stride];
    }
    if (pairs) {
      *reinterpret_cast<Pair<T>*>(re.data + r * re.row_stride + 2 * c) = Pair<T>{out_re, out_im};
    } else {
      re.data[r * re.row_stride + c * re.col_stride] = out_re;
      im.data[r * im.row_stride + c * im.col_stride] = out_im;
    }
  }
}

template <typename T>
__global__ void copy_parts_kernel(View<T> re, View<T> im, int64_t rows, int64_t cols, View<T> o_re, View<T> o_im) {
  const int64_t n = rows * cols;
  const bool pairs = interleaved(re, im);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    T a, b;
    load(re, im, pairs, r, c, a, b);
    o_re.data[r * o_re.row_stride + c * o_re.col_stride] = re.sign * a;
    o_im.data[r * o_im.row_stride + c * o_im.col_stride] = im.sign * b;
  }
}


void copy_parts(const ComplexPair& src, const ComplexPair& dst) {
  const int64_t rows = src.re.size(0), cols = src.re.size(1), n = rows * cols;
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(dst.re.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(dst.re.scalar_type(), "cplxfast_copy_parts_cuda", [&] {
    copy_parts_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        view_of<scalar_t>(src.re), view_of<scalar_t>(src.im), rows, cols, view_of<scalar_t>(dst.re),
        view_of<scalar_t>(dst.im));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void split_planes(const ComplexPair& s, bool conj, at::TensorList planes) {
  const int64_t rows = s.re.size(0), cols = s.re.size(1), n = rows * cols;
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(planes[0].device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(planes[0].scalar_type(), "cplxfast_split_planes_cuda", [&] {
    const View<scalar_t> re = view_of<scalar_t>(s.re), im = view_of<scalar_t>(s.im);
    split_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        re, im, conj ? -im.sign : im.sign, rows, cols, plane_ptrs<scalar_t>(planes));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void combine_planes(at::TensorList products, const ComplexPair& bias, const ComplexPair& out) {
  const int64_t rows = out.re.size(0), cols = out.re.size(1), n = rows * cols;
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(products[0].device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(products[0].scalar_type(), "cplxfast_combine_planes_cuda", [&] {
    using V = View<scalar_t>;
    const V none{nullptr, 0, 0, scalar_t(1)};
    const bool has_bias = bias.re.defined();
    combine_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        plane_ptrs<scalar_t>(products), has_bias ? view_of<scalar_t>(bias.re) : none,
        has_bias ? view_of<scalar_t>(bias.im) : none, rows, cols, view_of<scalar_t>(out.re),
        view_of<scalar_t>(out.im));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

const PlaneKernels& plane_kernels() {
  static const PlaneKernels k{&split_planes, &combine_planes, &copy_parts};
  return k;
}

}  // namespace cplxfast::cuda
