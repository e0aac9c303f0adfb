// CUDA kernels for the two memory-bound passes of the fused 3M GEMM (see common/gemm3m.h).
// One complex element per thread, 64-bit indexing, grid-stride loops; complex values are read
// and written whole (8-byte complex64 / 16-byte complex128 accesses), planes are coalesced.
#include "cuda/planes.h"

#include <algorithm>

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/complex.h>

namespace cplxfast::cuda {
namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) {
  const int64_t max_blocks = int64_t{at::cuda::getCurrentDeviceProperties()->multiProcessorCount} * 32;
  return std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, max_blocks));
}

template <typename T>
__global__ void split_kernel(const c10::complex<T>* __restrict__ s, int64_t rows, int64_t cols,
                             int64_t row_stride, int64_t col_stride, T sgn, T* __restrict__ planes) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    const c10::complex<T> v = s[r * row_stride + c * col_stride];
    const T re = v.real(), im = sgn * v.imag();
    planes[i] = re;
    planes[n + i] = im;
    planes[2 * n + i] = re + im;
  }
}

template <typename T>
__global__ void combine_kernel(const T* __restrict__ P, const c10::complex<T>* __restrict__ bias,
                               int64_t rows, int64_t cols, c10::complex<T>* __restrict__ out,
                               int64_t row_stride, int64_t col_stride) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    const T a = P[i], b = P[n + i];
    c10::complex<T> v(a - b, P[2 * n + i] - a - b);
    if (bias != nullptr) v += bias[c];
    out[r * row_stride + c * col_stride] = v;
  }
}

}  // namespace

void split_planes(const at::Tensor& s, bool conj, const at::Tensor& planes) {
  const int64_t rows = s.size(0), cols = s.size(1), n = rows * cols;
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(s.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(planes.scalar_type(), "cplxfast_split_planes_cuda", [&] {
    split_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        reinterpret_cast<const c10::complex<scalar_t>*>(s.data_ptr()), rows, cols, s.stride(0),
        s.stride(1), conj ? scalar_t(-1) : scalar_t(1), planes.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void combine_planes(const at::Tensor& products, const at::Tensor& bias, const at::Tensor& out) {
  const int64_t rows = out.size(0), cols = out.size(1), n = rows * cols;
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(out.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor b = bias.defined() ? bias.contiguous() : bias;
  AT_DISPATCH_FLOATING_TYPES(products.scalar_type(), "cplxfast_combine_planes_cuda", [&] {
    using C = c10::complex<scalar_t>;
    combine_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        products.data_ptr<scalar_t>(), b.defined() ? reinterpret_cast<const C*>(b.data_ptr()) : nullptr,
        rows, cols, reinterpret_cast<C*>(out.data_ptr()), out.stride(0), out.stride(1));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace cplxfast::cuda
