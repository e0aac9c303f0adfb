// The Gaussian reparametrisation on CUDA: one thread per pair of complex elements (one Philox
// block), forward and backward. The (seed, offset) come from torch's CUDA generator through
// philox_cuda_state, which also works under CUDA graph capture; the forward's first thread writes
// them, unpacked, to the rng tensor on the device, and the backward reads them there: no host
// round trip either way.
#include <mutex>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/PhiloxUtils.cuh>
#include <c10/cuda/CUDAException.h>
#include <torch/library.h>

#include <cstdint>

#include "common/layout.h"
#include "cuda/kernel_utils.cuh"
#include "cuda/planes.h"
#include "cuda/reparam.h"

namespace cplxfast::cuda {
namespace {

// Philox blocks: torch's generator offsets count 32-bit values, four per block.
constexpr uint64_t kValuesPerBlock = 4;

// f(i, e_re, e_im) for every element i < n with its noise: one thread per pair (grid-stride).
template <typename T, typename I, typename F>
__device__ __forceinline__ void for_each_noise(uint64_t seed, uint64_t block, I n, const F& f) {
  const I pairs = (n + 1) / 2;
  for (I p = blockIdx.x * I(blockDim.x) + threadIdx.x; p < pairs; p += I(gridDim.x) * blockDim.x) {
    T e[4];
    reparam_math::noise_pair<T>(seed, block, p, e);
    for (int k = 0; k < 2 && 2 * p + k < n; ++k) f(I(2 * p + k), e[2 * k], e[2 * k + 1]);
  }
}

template <typename T, typename I>
__global__ void reparam_forward_kernel(const Pair<T>* __restrict__ mu, const T* __restrict__ s2, I n,
                                       at::PhiloxCudaState state, int64_t* __restrict__ rng, Pair<T>* __restrict__ out) {
  const auto seeds = at::cuda::philox::unpack(state);
  const uint64_t seed = std::get<0>(seeds), block = std::get<1>(seeds) / kValuesPerBlock;
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    rng[0] = static_cast<int64_t>(seed);
    rng[1] = static_cast<int64_t>(block);
  }
  for_each_noise<T>(seed, block, n, [&](I i, T e_re, T e_im) {
    const Pair<T> m = mu[i];
    Pair<T> o;
    reparam_math::forward(m.re, m.im, s2[i], e_re, e_im, o.re, o.im);
    out[i] = o;
  });
}

template <typename T, typename I>
__global__ void reparam_backward_kernel(const Pair<T>* __restrict__ g, const T* __restrict__ s2, I n,
                                        const int64_t* __restrict__ rng, T* __restrict__ grad_s2) {
  for_each_noise<T>(static_cast<uint64_t>(rng[0]), static_cast<uint64_t>(rng[1]), n, [&](I i, T e_re, T e_im) {
    const Pair<T> gv = g[i];
    grad_s2[i] = reparam_math::grad_s2(gv.re, gv.im, s2[i], e_re, e_im);
  });
}

at::PhiloxCudaState next_philox_state() {
  auto* gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(c10::nullopt,
                                                                   at::cuda::detail::getDefaultCUDAGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);  // see ATen's note on using random generators
  return gen->philox_cuda_state(kValuesPerBlock);
}

// ---- the fused Gaussian layers' noise (common/reparam.h) ----

__global__ void draw_kernel(at::PhiloxCudaState state, int64_t* __restrict__ rng) {
  const auto seeds = at::cuda::philox::unpack(state);
  rng[0] = static_cast<int64_t>(std::get<0>(seeds));
  rng[1] = static_cast<int64_t>(std::get<1>(seeds) / kValuesPerBlock);
}

void draw_state(const at::Tensor& rng) {
  const c10::cuda::CUDAGuard guard(rng.device());
  draw_kernel<<<1, 1, 0, at::cuda::getCurrentCUDAStream()>>>(next_philox_state(), rng.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// One thread per element: its pair's Philox block, the Box-Muller of its half (a pair's two
// elements are neighbours in a row, so the block is computed twice, by two threads of a warp:
// the kernel is bound by its 20 bytes of memory traffic per element, not by the generator).
template <typename T, typename I>
__global__ void combine_noisy_kernel(PlanePtrs<T> q, const T* __restrict__ b_re, const T* __restrict__ b_im,
                                     View<T> s2, int64_t first, const int64_t* __restrict__ rng, I n, I cols,
                                     Pair<T>* __restrict__ out, int64_t out_row) {
  const uint64_t seed = static_cast<uint64_t>(rng[0]), block = static_cast<uint64_t>(rng[1]);
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - I(r) * cols;
    const T a = q.data[0][r * q.row[0] + c], b = q.data[1][r * q.row[1] + c];
    T mu_re = a - b, mu_im = q.data[2][r * q.row[2] + c] - a - b;
    if (b_re != nullptr) {
      mu_re += b_re[c];
      mu_im += b_im[c];
    }
    const uint64_t index = static_cast<uint64_t>(first + r * s2.row_stride + c);
    uint32_t bits[4];
    reparam_math::philox(seed, block, index / 2, bits);
    const int half = static_cast<int>(index & 1);
    T e_re, e_im;
    reparam_math::box_muller<T>(bits[2 * half], bits[2 * half + 1], e_re, e_im);
    Pair<T> o;
    reparam_math::forward(mu_re, mu_im, s2.data[r * s2.row_stride + c], e_re, e_im, o.re, o.im);
    out[r * out_row + c] = o;
  }
}

void combine_noisy(at::TensorList products, const ComplexPair& bias, const NoiseSource& noise, const ComplexPair& out) {
  TORCH_INTERNAL_ASSERT(products.size() == 3);
  const int64_t rows = out.re.size(0), cols = out.re.size(1), n = rows * cols;
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(out.re.device());
  AT_DISPATCH_FLOATING_TYPES(noise.s2.scalar_type(), "cplxfast_combine_noisy_cuda", [&] {
    using T = scalar_t;
    const View<T> re = view_of<T>(out.re), im = view_of<T>(out.im);
    TORCH_INTERNAL_ASSERT(re.col_stride == 2 && im.data == re.data + 1 && re.row_stride == im.row_stride &&
                          re.row_stride % 2 == 0 && re.sign == 1 && im.sign == 1 && !out.scale.defined() &&
                          reinterpret_cast<std::uintptr_t>(re.data) % (2 * sizeof(T)) == 0);
    const bool has_bias = bias.re.defined();
    const at::Tensor b_re = has_bias ? bias.re.resolve_neg().contiguous() : at::Tensor();
    const at::Tensor b_im = has_bias ? bias.im.resolve_neg().contiguous() : at::Tensor();
    const View<T> v = view_of<T>(noise.s2);
    TORCH_INTERNAL_ASSERT(v.col_stride == 1 || cols <= 1);
    with_index_type(n, [&](auto index) {
      using I = decltype(index);
      combine_noisy_kernel<T, I><<<grid_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          plane_ptrs<T>(products), has_bias ? b_re.data_ptr<T>() : nullptr,
          has_bias ? b_im.data_ptr<T>() : nullptr, v, noise.first, noise.rng.data_ptr<int64_t>(), I(n), I(cols),
          reinterpret_cast<Pair<T>*>(re.data), re.row_stride / 2);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

std::tuple<at::Tensor, at::Tensor> gaussian_reparam(const at::Tensor& mu, const at::Tensor& s2) {
  const char* op = "cplxfast.gaussian_reparam";
  const auto guard = device_guard(op, mu);
  const ReparamOperands P = plan_reparam(op, "mu", mu, s2);
  at::Tensor out = at::empty_strided(P.s2.sizes(), P.s2.strides(), P.z.options());
  at::Tensor rng = at::empty({2}, mu.options().dtype(at::kLong));
  const at::PhiloxCudaState state = next_philox_state();
  // Even an empty call runs one thread, to write the generator state.
  const int64_t pairs = (P.numel + 1) / 2;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(P.s2.scalar_type(), "cplxfast_gaussian_reparam_cuda", [&] {
    with_index_type(P.numel, [&](auto index) {
      using I = decltype(index);
      reparam_forward_kernel<scalar_t, I><<<grid_for(pairs), kThreads, 0, stream>>>(
          reinterpret_cast<const Pair<scalar_t>*>(P.z.data_ptr()), P.s2.data_ptr<scalar_t>(), I(P.numel), state,
          rng.data_ptr<int64_t>(), reinterpret_cast<Pair<scalar_t>*>(out.data_ptr()));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {out, rng};
}

at::Tensor gaussian_reparam_backward(const at::Tensor& grad, const at::Tensor& s2, const at::Tensor& rng) {
  const char* op = "cplxfast.gaussian_reparam_backward";
  const auto guard = device_guard(op, grad);
  const ReparamOperands P = plan_reparam(op, "grad", grad, s2);
  check_rng_state(op, rng, s2);
  at::Tensor grad_s2 = at::empty_strided(P.s2.sizes(), P.s2.strides(), P.s2.options());
  if (P.numel == 0) return grad_s2;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(P.s2.scalar_type(), "cplxfast_gaussian_reparam_backward_cuda", [&] {
    with_index_type(P.numel, [&](auto index) {
      using I = decltype(index);
      reparam_backward_kernel<scalar_t, I><<<grid_for((P.numel + 1) / 2), kThreads, 0, stream>>>(
          reinterpret_cast<const Pair<scalar_t>*>(P.z.data_ptr()), P.s2.data_ptr<scalar_t>(), I(P.numel),
          rng.data_ptr<int64_t>(), grad_s2.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return grad_s2;
}

}  // namespace

const NoiseKernels& noise_kernels() {
  static const NoiseKernels k{&draw_state, &combine_noisy};
  return k;
}

TORCH_LIBRARY_IMPL(cplxfast, CUDA, m) {
  m.impl("gaussian_reparam", &gaussian_reparam);
  m.impl("gaussian_reparam_backward", &gaussian_reparam_backward);
}

}  // namespace cplxfast::cuda
