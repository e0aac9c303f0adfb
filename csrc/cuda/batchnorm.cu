// Complex batch norm on CUDA: the device-agnostic driver (common/batchnorm.cpp) with CUDA
// kernels; three launches per training forward or backward. Per-channel reductions are the
// partial sums of cuda/channel_sums.cuh in double: a block per (channel, split) for
// channels-first input, a 32-channel tile per block for channels-inner input ([B, C],
// channels_last); no atomics, so results repeat bit for bit. One thread per channel then sums
// the splits in order and computes the statistics, the apply coefficients and the parameter
// gradients (bn_finish_channel, shared with the CPU). The apply pass is elementwise with
// whole-complex (8/16-byte) accesses and 32-bit indices where the tensor allows.
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/batchnorm.h"
#include "cuda/channel_sums.cuh"
#include "cuda/kernel_utils.cuh"

namespace cplxfast::cuda {
namespace {

struct Shift {
  double re, im;
};

// Shifted moment sums of a channel: sum x', sum x'r^2, x'r x'i, x'i^2 with x' = x - shift, the
// shift being the channel's first element (accuracy with a large mean).
template <typename T>
struct MomentSumsOp {
  const Pair<T>* x;
  int64_t inner;

  using State = Shift;
  __device__ Shift state(int64_t c) const {
    const Pair<T> first = x[c * inner];
    return {double(first.re), double(first.im)};
  }
  __device__ void operator()(const Shift& s, int64_t idx, double (&acc)[5]) const {
    const Pair<T> v = x[idx];
    const double xr = double(v.re) - s.re, xi = double(v.im) - s.im;
    acc[0] += xr;
    acc[1] += xi;
    acc[2] += xr * xr;
    acc[3] += xr * xi;
    acc[4] += xi * xi;
  }
};

// Gradient sums of a channel: sum g, and S = sum g x'^T with x' = x - mean.
template <typename T>
struct GradSumsOp {
  const Pair<T>* x;
  const Pair<T>* g;
  BnStat mean;  // [2, C]
  int64_t C;

  using State = Shift;
  __device__ Shift state(int64_t c) const { return {mean.at<T>(c), mean.at<T>(C + c)}; }
  __device__ void operator()(const Shift& m, int64_t idx, double (&acc)[6]) const {
    const Pair<T> v = x[idx], gv = g[idx];
    const double xr = double(v.re) - m.re, xi = double(v.im) - m.im, gr = gv.re, gi = gv.im;
    acc[0] += gr;
    acc[1] += gi;
    acc[2] += gr * xr;
    acc[3] += gr * xi;
    acc[4] += gi * xr;
    acc[5] += gi * xi;
  }
};

template <typename T>
__global__ void finish_kernel(BnFinish a) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c < a.C) bn_finish_channel<T>(a, c);
}

template <typename T, typename I>
__global__ void apply_kernel(const Pair<T>* __restrict__ u, const Pair<T>* __restrict__ v, const double* __restrict__ k,
                             I numel, I C, I inner, Pair<T>* __restrict__ out) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < numel; i += I(gridDim.x) * blockDim.x) {
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

int64_t channel_blocks(int64_t C) { return (C + kThreads - 1) / kThreads; }

// The layout's elements as [outer, C, inner] for the channel sums.
int64_t outer_of(const BatchNormLayout& L) { return L.numel / (L.C * L.inner); }

at::Tensor moment_sums(const BatchNormLayout& L) {
  const c10::cuda::CUDAGuard guard(L.z.device());
  at::Tensor partials;
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(L.z.scalar_type()), "cplxfast_bn_moments_cuda", [&] {
    const MomentSumsOp<scalar_t> op{static_cast<const Pair<scalar_t>*>(L.z.data_ptr()), L.inner};
    partials = channel_partials<5>(op, outer_of(L), L.C, L.inner, L.z.options());
  });
  return partials;
}

at::Tensor grad_sums(const BatchNormLayout& L, const at::Tensor& g, const BnStat& mean) {
  const c10::cuda::CUDAGuard guard(L.z.device());
  at::Tensor partials;
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(L.z.scalar_type()), "cplxfast_bn_grad_sums_cuda", [&] {
    using P = Pair<scalar_t>;
    const GradSumsOp<scalar_t> op{static_cast<const P*>(L.z.data_ptr()), static_cast<const P*>(g.data_ptr()), mean, L.C};
    partials = channel_partials<6>(op, outer_of(L), L.C, L.inner, L.z.options());
  });
  return partials;
}

void apply(const BatchNormLayout& L, const at::Tensor& u, const at::Tensor& v, const at::Tensor& coeffs,
           const at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(L.z.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(L.z.scalar_type()), "cplxfast_bn_apply_cuda", [&] {
    using P = Pair<scalar_t>;
    with_index_type(L.numel, [&](auto index) {
      using I = decltype(index);
      apply_kernel<scalar_t, I><<<grid_for(L.numel), kThreads, 0, stream>>>(
          static_cast<const P*>(u.data_ptr()), v.defined() ? static_cast<const P*>(v.data_ptr()) : nullptr,
          coeffs.data_ptr<double>(), I(L.numel), I(L.C), I(L.inner), static_cast<P*>(out.data_ptr()));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

// One thread per channel: statistics, coefficients and parameter gradients in one launch.
void finish(const BnFinish& a, at::ScalarType real) {
  AT_DISPATCH_FLOATING_TYPES(real, "cplxfast_bn_finish_cuda", [&] {
    finish_kernel<scalar_t><<<channel_blocks(a.C), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

const BatchNormBackend& backend() {
  static const BatchNormBackend b{&moment_sums, &grad_sums, &apply, &finish};
  return b;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm(
    const at::Tensor& input, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& running_mean, const c10::optional<at::Tensor>& running_var, bool training,
    double eps) {
  const auto guard = device_guard("cplxfast.batch_norm", input);
  return batch_norm_forward(input, weight, bias, running_mean, running_var, training, eps, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_backward(
    const at::Tensor& grad, const at::Tensor& input, const c10::optional<at::Tensor>& weight, const at::Tensor& mean,
    const at::Tensor& cov, bool training, std::array<bool, 3> output_mask, const c10::optional<at::Tensor>& grad_sums,
    int64_t count) {
  const auto guard = device_guard("cplxfast.batch_norm_backward", input);
  return cplxfast::batch_norm_backward(grad, input, weight, mean, cov, training, output_mask, grad_sums, count,
                                       backend());
}

std::tuple<at::Tensor, at::Tensor> batch_norm_stats(const at::Tensor& input) {
  const auto guard = device_guard("cplxfast.batch_norm_stats", input);
  return cplxfast::batch_norm_stats(input, backend());
}

at::Tensor batch_norm_grad_sums(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& mean) {
  const auto guard = device_guard("cplxfast.batch_norm_grad_sums", input);
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
