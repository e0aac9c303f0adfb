// modReLU on CUDA: one pass over z forward; one pass over (z, g) backward that also reduces the
// threshold gradient (warp shuffles where a warp's elements share a threshold, shared-memory
// partial sums per block, one global atomic per block and threshold). Elements are walked in
// z's memory order; complex values are loaded and stored whole (8/16-byte accesses).
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/layout.h"
#include "common/modrelu.h"

namespace cplxfast::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kSharedThresholds = 2048;  // doubles in shared memory per block (16 KiB)

template <typename T>
struct alignas(2 * sizeof(T)) Pair {
  T re, im;
};

int64_t blocks_for(int64_t n, int per_sm) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, sms * per_sm));
}

template <typename T>
__global__ void modrelu_kernel(const Pair<T>* __restrict__ z, const T* __restrict__ tau, int64_t n,
                               int64_t inner, int64_t T_count, Pair<T>* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const Pair<T> v = z[i];
    const T f = modrelu_math::scale(v.re, v.im, tau[(i / inner) % T_count]);
    out[i] = Pair<T>{v.re * f, v.im * f};
  }
}

template <typename T>
__global__ void modrelu_backward_kernel(const Pair<T>* __restrict__ z, const Pair<T>* __restrict__ g,
                                        const T* __restrict__ tau, int64_t n, int64_t inner, int64_t T_count,
                                        Pair<T>* __restrict__ grad_z, double* __restrict__ grad_tau) {
  extern __shared__ double partial[];  // [T_count] when T_count <= kSharedThresholds
  const bool shared = grad_tau != nullptr && T_count <= kSharedThresholds;
  if (shared) {
    for (int64_t t = threadIdx.x; t < T_count; t += blockDim.x) partial[t] = 0;
    __syncthreads();
  }
  const int lane = threadIdx.x & 31;
  // Every lane runs the same number of iterations, so the warp-wide shuffles below are safe.
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t iters = (n + stride - 1) / stride;
  for (int64_t it = 0; it < iters; ++it) {
    const int64_t i = first + it * stride;
    const bool active = i < n;
    int64_t t = -1;
    double dtau = 0;
    if (active) {
      t = (i / inner) % T_count;
      const Pair<T> v = z[i], gv = g[i];
      T dre, dim, dt;
      modrelu_math::grads(v.re, v.im, tau[t], gv.re, gv.im, dre, dim, dt);
      if (grad_z != nullptr) grad_z[i] = Pair<T>{dre, dim};
      dtau = dt;
    }
    if (grad_tau == nullptr) continue;
    const int64_t t0 = __shfl_sync(0xffffffffu, t, 0);
    if (__all_sync(0xffffffffu, !active || t == t0)) {  // the warp shares one threshold
      for (int offset = 16; offset > 0; offset >>= 1) dtau += __shfl_down_sync(0xffffffffu, dtau, offset);
      if (lane == 0 && t0 >= 0) atomicAdd(shared ? &partial[t0] : &grad_tau[t0], dtau);
    } else if (active) {
      atomicAdd(shared ? &partial[t] : &grad_tau[t], dtau);
    }
  }
  if (shared) {
    __syncthreads();
    for (int64_t t = threadIdx.x; t < T_count; t += blockDim.x) {
      if (partial[t] != 0) atomicAdd(&grad_tau[t], partial[t]);
    }
  }
}

at::Tensor modrelu(const at::Tensor& z, const at::Tensor& threshold) {
  const c10::cuda::CUDAGuard guard(z.device());
  const ModReLULayout L = plan_modrelu("cplxfast.modrelu", z, threshold);
  at::Tensor out = empty_with_layout_of(L.z);
  if (L.numel == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(L.tau_block.scalar_type(), "cplxfast_modrelu_cuda", [&] {
    modrelu_kernel<scalar_t><<<blocks_for(L.numel, 32), kThreads, 0, stream>>>(
        reinterpret_cast<const Pair<scalar_t>*>(L.z.data_ptr()), L.tau_block.data_ptr<scalar_t>(), L.numel,
        L.inner, L.T, reinterpret_cast<Pair<scalar_t>*>(out.data_ptr()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> modrelu_backward(const at::Tensor& grad, const at::Tensor& z,
                                                    const at::Tensor& threshold, std::array<bool, 2> mask) {
  const char* op = "cplxfast.modrelu_backward";
  const c10::cuda::CUDAGuard guard(z.device());
  const ModReLULayout L = plan_modrelu(op, z, threshold);
  TORCH_CHECK(grad.sizes() == z.sizes(), op, ": grad has shape ", grad.sizes(), " but the input has shape ", z.sizes());
  TORCH_CHECK(grad.scalar_type() == z.scalar_type(), op, ": grad has dtype ", grad.scalar_type(), " but the input ", z.scalar_type());
  const at::Tensor g = with_layout_of(grad, L.z);
  at::Tensor grad_z = mask[0] ? empty_with_layout_of(L.z) : at::Tensor();
  at::Tensor grad_tau;
  if (L.numel == 0) {
    if (mask[1]) grad_tau = at::zeros_like(threshold, at::MemoryFormat::Contiguous);
    return {grad_z, grad_tau};
  }
  at::Tensor block = mask[1] ? at::zeros({L.T}, L.tau_block.options().dtype(at::kDouble)) : at::Tensor();
  auto stream = at::cuda::getCurrentCUDAStream();
  const size_t smem = mask[1] && L.T <= kSharedThresholds ? L.T * sizeof(double) : 0;
  AT_DISPATCH_FLOATING_TYPES(L.tau_block.scalar_type(), "cplxfast_modrelu_backward_cuda", [&] {
    using P = Pair<scalar_t>;
    modrelu_backward_kernel<scalar_t><<<blocks_for(L.numel, 4), kThreads, smem, stream>>>(
        reinterpret_cast<const P*>(L.z.data_ptr()), reinterpret_cast<const P*>(g.data_ptr()),
        L.tau_block.data_ptr<scalar_t>(), L.numel, L.inner, L.T,
        mask[0] ? reinterpret_cast<P*>(grad_z.data_ptr()) : nullptr, mask[1] ? block.data_ptr<double>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  if (mask[1]) grad_tau = grad_threshold_from_block(L, block, threshold);
  return {grad_z, grad_tau};
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CUDA, m) {
  m.impl("modrelu", &modrelu);
  m.impl("modrelu_backward", &modrelu_backward);
}

}  // namespace cplxfast::cuda
