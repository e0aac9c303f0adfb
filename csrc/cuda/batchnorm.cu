// Complex batch norm on CUDA: the device-agnostic driver (common/batchnorm.cpp) with CUDA
// kernels. Per-channel reductions run on a (channel, split) grid with double accumulation, block
// reductions in shared memory and one atomic per block and sum; the apply pass is elementwise
// with whole-complex (8/16-byte) accesses; per-channel coefficient maths runs one thread per
// channel (bn_math, shared with the CPU).
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/batchnorm.h"

namespace cplxfast::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
struct alignas(2 * sizeof(T)) Pair {
  T re, im;
};

// Shifted moment sums (K = 5) or gradient sums (K = 6) of one channel per blockIdx.x.
template <typename T, int K>
__global__ void channel_sums_kernel(const Pair<T>* __restrict__ x, const Pair<T>* __restrict__ g,
                                    const double* __restrict__ mean, int64_t C, int64_t inner, int64_t per_channel,
                                    double* __restrict__ sums) {
  const int64_t c = blockIdx.x;
  // Moments: shift by the channel's first element (accuracy with a large mean); gradient sums:
  // x' = x - mean.
  const Pair<T> first = x[c * inner];
  const double s0 = K == 5 ? double(first.re) : mean[2 * c], s1 = K == 5 ? double(first.im) : mean[2 * c + 1];
  double acc[K] = {};
  for (int64_t j = blockIdx.y * int64_t{blockDim.x} + threadIdx.x; j < per_channel; j += int64_t{gridDim.y} * blockDim.x) {
    const int64_t o = j / inner, i = j - o * inner;
    const int64_t idx = (o * C + c) * inner + i;
    const Pair<T> v = x[idx];
    const double xr = double(v.re) - s0, xi = double(v.im) - s1;
    if (K == 5) {
      acc[0] += xr;
      acc[1] += xi;
      acc[2] += xr * xr;
      acc[3] += xr * xi;
      acc[4] += xi * xi;
    } else {
      const Pair<T> gv = g[idx];
      const double gr = gv.re, gi = gv.im;
      acc[0] += gr;
      acc[1] += gi;
      acc[2] += gr * xr;
      acc[3] += gr * xi;
      acc[4 % K] += gi * xr;
      acc[5 % K] += gi * xi;
    }
  }
  __shared__ double shared[K][kThreads];
  for (int k = 0; k < K; ++k) shared[k][threadIdx.x] = acc[k];
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) {
      for (int k = 0; k < K; ++k) shared[k][threadIdx.x] += shared[k][threadIdx.x + width];
    }
    __syncthreads();
  }
  if (threadIdx.x < K) atomicAdd(&sums[c * K + threadIdx.x], shared[threadIdx.x][0]);
}

// Moments from shifted sums: mean = shift + E[x - shift], central moments.
template <typename T>
__global__ void finish_moments_kernel(const Pair<T>* __restrict__ x, const double* __restrict__ sums, int64_t C,
                                      int64_t inner, double n, double* __restrict__ out) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c >= C) return;
  const Pair<T> first = x[c * inner];
  const double* s = sums + 5 * c;
  const double mr = s[0] / n, mi = s[1] / n;
  out[5 * c] = double(first.re) + mr;
  out[5 * c + 1] = double(first.im) + mi;
  out[5 * c + 2] = s[2] / n - mr * mr;
  out[5 * c + 3] = s[3] / n - mr * mi;
  out[5 * c + 4] = s[4] / n - mi * mi;
}

template <typename T>
__global__ void apply_kernel(const Pair<T>* __restrict__ u, const Pair<T>* __restrict__ v, const double* __restrict__ k,
                             int64_t numel, int64_t C, int64_t inner, Pair<T>* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < numel; i += int64_t{gridDim.x} * blockDim.x) {
    const double* q = k + kBnCoeffs * ((i / inner) % C);
    const Pair<T> a = u[i];
    const double ur = double(a.re) - q[10], ui = double(a.im) - q[11];
    double r = q[0] * ur + q[1] * ui + q[8];
    double im = q[2] * ur + q[3] * ui + q[9];
    if (v != nullptr) {
      const Pair<T> b = v[i];
      const double vr = double(b.re) - q[12], vi = double(b.im) - q[13];
      r += q[4] * vr + q[5] * vi;
      im += q[6] * vr + q[7] * vi;
    }
    out[i] = Pair<T>{T(r), T(im)};
  }
}

__global__ void forward_coeffs_kernel(const double* mean, const double* cov, const double* W, const double* bias,
                                      int64_t C, double* k) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c < C) forward_row(mean + 2 * c, cov + 4 * c, W + 4 * c, bias + 2 * c, k + kBnCoeffs * c);
}

__global__ void backward_coeffs_kernel(const double* mean, const double* cov, const double* W, const double* sums,
                                       double n, bool training, int64_t C, double* k, double* grad_W) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c < C) backward_row(mean + 2 * c, cov + 4 * c, W + 4 * c, sums + 6 * c, n, training, k + kBnCoeffs * c, grad_W + 4 * c);
}

int64_t channel_blocks(int64_t C) { return (C + kThreads - 1) / kThreads; }

// Splits per channel so that the (C, splits) grid fills the GPU, each block >= 4 waves of work.
dim3 sums_grid(const BatchNormLayout& L) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t want = std::max<int64_t>(1, (sms * 8 + L.C - 1) / L.C);
  const int64_t useful = std::max<int64_t>(1, L.per_channel / (4 * kThreads));
  return dim3(static_cast<unsigned>(L.C), static_cast<unsigned>(std::min<int64_t>({want, useful, 65535})));
}

template <int K>
at::Tensor channel_sums(const BatchNormLayout& L, const at::Tensor& g, const at::Tensor& mean) {
  at::Tensor sums = at::zeros({L.C, K}, L.z.options().dtype(at::kDouble));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(L.z.scalar_type()), "cplxfast_bn_sums_cuda", [&] {
    using P = Pair<scalar_t>;
    channel_sums_kernel<scalar_t, K><<<sums_grid(L), kThreads, 0, stream>>>(
        static_cast<const P*>(L.z.data_ptr()), g.defined() ? static_cast<const P*>(g.data_ptr()) : nullptr,
        mean.defined() ? mean.data_ptr<double>() : nullptr, L.C, L.inner, L.per_channel, sums.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return sums;
}

at::Tensor moments(const BatchNormLayout& L) {
  const c10::cuda::CUDAGuard guard(L.z.device());
  const at::Tensor sums = channel_sums<5>(L, at::Tensor(), at::Tensor());
  at::Tensor out = at::empty({L.C, 5}, sums.options());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(L.z.scalar_type()), "cplxfast_bn_moments_cuda", [&] {
    finish_moments_kernel<scalar_t><<<channel_blocks(L.C), kThreads, 0, stream>>>(
        static_cast<const Pair<scalar_t>*>(L.z.data_ptr()), sums.data_ptr<double>(), L.C, L.inner,
        static_cast<double>(L.per_channel), out.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor grad_sums(const BatchNormLayout& L, const at::Tensor& g, const at::Tensor& mean) {
  const c10::cuda::CUDAGuard guard(L.z.device());
  return channel_sums<6>(L, g, mean);
}

void apply(const BatchNormLayout& L, const at::Tensor& u, const at::Tensor& v, const at::Tensor& coeffs,
           const at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(L.z.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((L.numel + kThreads - 1) / kThreads, sms * 32));
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(L.z.scalar_type()), "cplxfast_bn_apply_cuda", [&] {
    using P = Pair<scalar_t>;
    apply_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        static_cast<const P*>(u.data_ptr()), v.defined() ? static_cast<const P*>(v.data_ptr()) : nullptr,
        coeffs.data_ptr<double>(), L.numel, L.C, L.inner, static_cast<P*>(out.data_ptr()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void forward_coeffs(const at::Tensor& mean, const at::Tensor& cov, const at::Tensor& W, const at::Tensor& bias,
                    const at::Tensor& coeffs) {
  const int64_t C = coeffs.size(0);
  if (C == 0) return;
  const c10::cuda::CUDAGuard guard(coeffs.device());
  forward_coeffs_kernel<<<channel_blocks(C), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      mean.data_ptr<double>(), cov.data_ptr<double>(), W.data_ptr<double>(), bias.data_ptr<double>(), C,
      coeffs.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void backward_coeffs(const at::Tensor& mean, const at::Tensor& cov, const at::Tensor& W, const at::Tensor& sums,
                     double n, bool training, const at::Tensor& coeffs, const at::Tensor& grad_W) {
  const int64_t C = coeffs.size(0);
  if (C == 0) return;
  const c10::cuda::CUDAGuard guard(coeffs.device());
  backward_coeffs_kernel<<<channel_blocks(C), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      mean.data_ptr<double>(), cov.data_ptr<double>(), W.data_ptr<double>(), sums.data_ptr<double>(), n, training, C,
      coeffs.data_ptr<double>(), grad_W.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

const BatchNormBackend& backend() {
  static const BatchNormBackend b{&moments, &grad_sums, &apply, &forward_coeffs, &backward_coeffs};
  return b;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm(
    const at::Tensor& input, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& running_mean, const c10::optional<at::Tensor>& running_var, bool training,
    double eps) {
  const c10::cuda::CUDAGuard guard(input.device());
  return batch_norm_forward(input, weight, bias, running_mean, running_var, training, eps, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_backward(
    const at::Tensor& grad, const at::Tensor& input, const c10::optional<at::Tensor>& weight, const at::Tensor& mean,
    const at::Tensor& cov, bool training, std::array<bool, 3> output_mask, const c10::optional<at::Tensor>& grad_sums,
    int64_t count) {
  const c10::cuda::CUDAGuard guard(input.device());
  return cplxfast::batch_norm_backward(grad, input, weight, mean, cov, training, output_mask, grad_sums, count,
                                       backend());
}

std::tuple<at::Tensor, at::Tensor> batch_norm_stats(const at::Tensor& input) {
  const c10::cuda::CUDAGuard guard(input.device());
  return cplxfast::batch_norm_stats(input, backend());
}

at::Tensor batch_norm_grad_sums(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& mean) {
  const c10::cuda::CUDAGuard guard(input.device());
  return cplxfast::batch_norm_grad_sums(grad, input, mean, backend());
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CUDA, m) {
  m.impl("batch_norm", &batch_norm);
  m.impl("batch_norm_backward", &batch_norm_backward);
  m.impl("batch_norm_stats", &batch_norm_stats);
  m.impl("batch_norm_grad_sums", &batch_norm_grad_sums);
}

}  // namespace cplxfast::cuda
