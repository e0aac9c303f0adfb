// modReLU on CUDA: one pass over z forward; one pass over (z, g) backward, which also reduces the
// threshold gradient when it is wanted: the per-threshold sums of cuda/channel_sums.cuh (z seen
// as [outer, T, inner] in memory order; partial sums per block, summed in a fixed order: no
// atomics, reproducible bit for bit). With thresholds along the innermost dim (threshold [F] on
// [B, F], the usual case after a linear layer) each thread owns one threshold's column and sums
// it in registers. Elements are walked in z's memory order; complex values are loaded and stored
// whole (8/16-byte accesses); flat indices are 32-bit where the tensor allows.
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/layout.h"
#include "common/modrelu.h"
#include "cuda/channel_sums.cuh"
#include "cuda/kernel_utils.cuh"

namespace cplxfast::cuda {
namespace {

template <typename T, typename I>
__global__ void modrelu_kernel(const Pair<T>* __restrict__ z, const T* __restrict__ tau, T eps, I n, I inner,
                               I T_count, Pair<T>* __restrict__ out) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    const Pair<T> v = z[i];
    Pair<T> o;
    modrelu_math::forward(v.re, v.im, tau[(i / inner) % T_count], eps, o.re, o.im);
    out[i] = o;
  }
}

// grad_z only (the threshold needs no gradient).
template <typename T, typename I>
__global__ void modrelu_grad_input_kernel(const Pair<T>* __restrict__ z, const Pair<T>* __restrict__ g,
                                          const T* __restrict__ tau, T eps, I n, I inner, I T_count,
                                          Pair<T>* __restrict__ grad_z) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    const Pair<T> v = z[i], gv = g[i];
    T dre, dim, dt;
    modrelu_math::grads(v.re, v.im, tau[(i / inner) % T_count], eps, gv.re, gv.im, dre, dim, dt);
    grad_z[i] = Pair<T>{dre, dim};
  }
}

// The backward pass as a per-threshold reduction: grad_z written per element (when wanted), the
// element gradients of the threshold summed per threshold ("channel" t of [outer, T, inner]).
template <typename T>
struct ModReLUBackwardOp {
  const Pair<T>* z;
  const Pair<T>* g;
  const T* tau;
  T eps;
  Pair<T>* grad_z;  // nullptr: not wanted

  using State = T;
  __device__ T state(int64_t t) const { return tau[t]; }
  __device__ void operator()(T tau_t, int64_t i, double (&acc)[1]) const {
    const Pair<T> v = z[i], gv = g[i];
    T dre, dim, dt;
    modrelu_math::grads(v.re, v.im, tau_t, eps, gv.re, gv.im, dre, dim, dt);
    if (grad_z != nullptr) grad_z[i] = Pair<T>{dre, dim};
    acc[0] += dt;
  }
};

at::Tensor modrelu(const at::Tensor& z, const at::Tensor& threshold, double eps) {
  const auto guard = device_guard("cplxfast.modrelu", z);
  const ModReLULayout L = plan_modrelu("cplxfast.modrelu", z, threshold, eps);
  at::Tensor out = empty_with_layout_of(L.z);
  if (L.numel == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(L.tau_block.scalar_type(), "cplxfast_modrelu_cuda", [&] {
    with_index_type(L.numel, [&](auto index) {
      using I = decltype(index);
      modrelu_kernel<scalar_t, I><<<grid_for(L.numel), kThreads, 0, stream>>>(
          reinterpret_cast<const Pair<scalar_t>*>(L.z.data_ptr()), L.tau_block.data_ptr<scalar_t>(), scalar_t(eps),
          I(L.numel),
          I(L.inner), I(L.T), reinterpret_cast<Pair<scalar_t>*>(out.data_ptr()));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> modrelu_backward(const at::Tensor& grad, const at::Tensor& z,
                                                    const at::Tensor& threshold, std::array<bool, 2> mask,
                                                    double eps) {
  const char* op = "cplxfast.modrelu_backward";
  const auto guard = device_guard("cplxfast.modrelu_backward", z);
  const ModReLULayout L = plan_modrelu(op, z, threshold, eps);
  check_grad_like_input(op, grad, z);
  const at::Tensor g = with_layout_of(grad, L.z);
  at::Tensor grad_z = mask[0] ? empty_with_layout_of(L.z) : at::Tensor();
  at::Tensor grad_tau;
  if (L.numel == 0) {
    if (mask[1]) grad_tau = at::zeros_like(threshold, at::MemoryFormat::Contiguous);
    return {grad_z, grad_tau};
  }
  auto stream = at::cuda::getCurrentCUDAStream();
  at::Tensor block;  // [T] per-threshold sums of the gradient, float64
  AT_DISPATCH_FLOATING_TYPES(L.tau_block.scalar_type(), "cplxfast_modrelu_backward_cuda", [&] {
    using P = Pair<scalar_t>;
    const P* zp = reinterpret_cast<const P*>(L.z.data_ptr());
    const P* gp = reinterpret_cast<const P*>(g.data_ptr());
    const scalar_t* tau = L.tau_block.data_ptr<scalar_t>();
    P* gz = mask[0] ? reinterpret_cast<P*>(grad_z.data_ptr()) : nullptr;
    if (mask[1]) {
      const ModReLUBackwardOp<scalar_t> op{zp, gp, tau, scalar_t(eps), gz};
      block = sum_splits(channel_partials<1>(op, L.numel / (L.T * L.inner), L.T, L.inner, L.z.options())).view({L.T});
    } else if (mask[0]) {
      with_index_type(L.numel, [&](auto index) {
        using I = decltype(index);
        modrelu_grad_input_kernel<scalar_t, I><<<grid_for(L.numel), kThreads, 0, stream>>>(
            zp, gp, tau, scalar_t(eps), I(L.numel), I(L.inner), I(L.T), gz);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
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
