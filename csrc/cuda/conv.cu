// Complex convolution on CUDA: the grouped 3M/4M driver (common/conv.cpp) with the CUDA plane
// kernels and cuDNN's real convolution, and a fused direct kernel for depthwise convolution.
//
// Depthwise (groups == channels, 1d/2d, contiguous): the forward pass is one thread per output
// element, accumulating the complex taps in registers (input reads coalesced along the row);
// grad_x is one thread per input element, gathering g conj(W) over the taps that reach it (no
// atomics); grad_W is one block per (channel, tap), reducing g conj(x) over batch and space
// through shared memory; grad_b is a sum of g.
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/conv.h"
#include "cuda/planes.h"

namespace cplxfast::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
struct alignas(2 * sizeof(T)) Cx {
  T re, im;
};

using Depthwise = DepthwiseGeometry;

int64_t blocks_for(int64_t n) {
  const int64_t max_blocks = int64_t{at::cuda::getCurrentDeviceProperties()->multiProcessorCount} * 32;
  return std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, max_blocks));
}

template <typename T>
__global__ void depthwise_forward_kernel(const Cx<T>* __restrict__ x, const T* __restrict__ wr,
                                         const T* __restrict__ wi, const T* __restrict__ br,
                                         const T* __restrict__ bi, Depthwise d, Cx<T>* __restrict__ y) {
  const int64_t n = d.B * d.C * d.OH * d.OW;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ow = i % d.OW, oh = (i / d.OW) % d.OH, plane = i / (d.OW * d.OH), c = plane % d.C;
    T acc_re = br ? br[c] : T(0), acc_im = bi ? bi[c] : T(0);
    const Cx<T>* xp = x + plane * d.H * d.W;
    for (int64_t kh = 0; kh < d.KH; ++kh) {
      const int64_t ih = oh * d.sh - d.ph + kh * d.dh;
      if (ih < 0 || ih >= d.H) continue;
      for (int64_t kw = 0; kw < d.KW; ++kw) {
        const int64_t iw = ow * d.sw - d.pw + kw * d.dw;
        if (iw < 0 || iw >= d.W) continue;
        const int64_t k = (c * d.KH + kh) * d.KW + kw;
        const Cx<T> v = xp[ih * d.W + iw];
        acc_re += v.re * wr[k] - v.im * wi[k];
        acc_im += v.re * wi[k] + v.im * wr[k];
      }
    }
    y[i] = Cx<T>{acc_re, acc_im};
  }
}

// gx[ih, iw] = sum over the taps (kh, kw) whose output (oh, ow) reads (ih, iw) of g conj(w).
template <typename T>
__global__ void depthwise_grad_input_kernel(const Cx<T>* __restrict__ g, const T* __restrict__ wr,
                                            const T* __restrict__ wi, Depthwise d, Cx<T>* __restrict__ gx) {
  const int64_t n = d.B * d.C * d.H * d.W;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t iw = i % d.W, ih = (i / d.W) % d.H, plane = i / (d.W * d.H), c = plane % d.C;
    const Cx<T>* gp = g + plane * d.OH * d.OW;
    T acc_re = 0, acc_im = 0;
    for (int64_t kh = 0; kh < d.KH; ++kh) {
      const int64_t th = ih + d.ph - kh * d.dh;
      if (th < 0 || th % d.sh != 0 || th / d.sh >= d.OH) continue;
      for (int64_t kw = 0; kw < d.KW; ++kw) {
        const int64_t tw = iw + d.pw - kw * d.dw;
        if (tw < 0 || tw % d.sw != 0 || tw / d.sw >= d.OW) continue;
        const int64_t k = (c * d.KH + kh) * d.KW + kw;
        const Cx<T> v = gp[(th / d.sh) * d.OW + tw / d.sw];
        acc_re += v.re * wr[k] + v.im * wi[k];
        acc_im += v.im * wr[k] - v.re * wi[k];
      }
    }
    gx[i] = Cx<T>{acc_re, acc_im};
  }
}

// One block per (channel, tap): gw = sum over (b, oh, ow) of g conj(x), accumulated in double
// for float inputs too (long reductions).
template <typename T>
__global__ void depthwise_grad_weight_kernel(const Cx<T>* __restrict__ g, const Cx<T>* __restrict__ x, Depthwise d,
                                             T* __restrict__ gw_re, T* __restrict__ gw_im) {
  const int64_t K = d.KH * d.KW, c = blockIdx.x / K, t = blockIdx.x % K, kh = t / d.KW, kw = t % d.KW;
  const int64_t per_batch = d.OH * d.OW, n = d.B * per_batch;
  double acc_re = 0, acc_im = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const int64_t b = i / per_batch, oh = (i % per_batch) / d.OW, ow = i % d.OW;
    const int64_t ih = oh * d.sh - d.ph + kh * d.dh, iw = ow * d.sw - d.pw + kw * d.dw;
    if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;
    const int64_t plane = b * d.C + c;
    const Cx<T> gv = g[plane * per_batch + oh * d.OW + ow], xv = x[(plane * d.H + ih) * d.W + iw];
    acc_re += double(gv.re) * xv.re + double(gv.im) * xv.im;
    acc_im += double(gv.im) * xv.re - double(gv.re) * xv.im;
  }
  __shared__ double sre[kThreads], sim[kThreads];
  sre[threadIdx.x] = acc_re;
  sim[threadIdx.x] = acc_im;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) {
      sre[threadIdx.x] += sre[threadIdx.x + s];
      sim[threadIdx.x] += sim[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    gw_re[c * K + t] = T(sre[0]);
    gw_im[c * K + t] = T(sim[0]);
  }
}

at::Tensor plain(const at::Tensor& t) { return t.resolve_neg().contiguous(); }

at::Tensor depthwise(const at::Tensor& x_in, const at::Tensor& weight_re, const at::Tensor& weight_im,
                     const at::Tensor& bias_re, const at::Tensor& bias_im, const ConvParams& p) {
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.resolve_conj().resolve_neg().contiguous();
  const Depthwise d = depthwise_geometry(x, weight_re, p);
  std::vector<int64_t> shape{d.B, d.C};
  if (x.dim() == 4) shape.push_back(d.OH);
  shape.push_back(d.OW);
  at::Tensor y = at::empty(shape, x.options());
  const at::Tensor br = bias_re.defined() ? plain(bias_re) : at::Tensor();
  const at::Tensor bi = bias_im.defined() ? plain(bias_im) : at::Tensor();
  const at::Tensor wr = plain(weight_re), wi = plain(weight_im);
  AT_DISPATCH_FLOATING_TYPES(weight_re.scalar_type(), "cplxfast_depthwise_cuda", [&] {
    using C = Cx<scalar_t>;
    depthwise_forward_kernel<scalar_t><<<blocks_for(y.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        reinterpret_cast<const C*>(x.data_ptr()), wr.data_ptr<scalar_t>(), wi.data_ptr<scalar_t>(),
        br.defined() ? br.data_ptr<scalar_t>() : nullptr, bi.defined() ? bi.data_ptr<scalar_t>() : nullptr, d,
        reinterpret_cast<C*>(y.data_ptr()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

ConvGrads depthwise_backward(const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& weight_re,
                             const at::Tensor& weight_im, const ConvParams& p, std::array<bool, 3> mask) {
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.resolve_conj().resolve_neg().contiguous();
  const at::Tensor g = grad.resolve_conj().resolve_neg().contiguous();
  const Depthwise d = depthwise_geometry(x, weight_re, p);
  const at::Tensor wr = plain(weight_re), wi = plain(weight_im);
  at::Tensor gx, gw_re, gw_im, gb_re, gb_im;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(weight_re.scalar_type(), "cplxfast_depthwise_backward_cuda", [&] {
    using C = Cx<scalar_t>;
    if (mask[0]) {
      gx = at::empty(x.sizes(), x.options());
      depthwise_grad_input_kernel<scalar_t><<<blocks_for(gx.numel()), kThreads, 0, stream>>>(
          reinterpret_cast<const C*>(g.data_ptr()), wr.data_ptr<scalar_t>(), wi.data_ptr<scalar_t>(), d,
          reinterpret_cast<C*>(gx.data_ptr()));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (mask[1]) {
      gw_re = at::empty(weight_re.sizes(), wr.options());
      gw_im = at::empty(weight_re.sizes(), wr.options());
      depthwise_grad_weight_kernel<scalar_t><<<d.C * d.KH * d.KW, kThreads, 0, stream>>>(
          reinterpret_cast<const C*>(g.data_ptr()), reinterpret_cast<const C*>(x.data_ptr()), d,
          gw_re.data_ptr<scalar_t>(), gw_im.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  if (mask[2]) {
    std::vector<int64_t> dims{0};
    for (int64_t i = 2; i < g.dim(); ++i) dims.push_back(i);
    const at::Tensor gb = g.sum(dims);
    gb_re = at::real(gb).contiguous();
    gb_im = at::imag(gb).contiguous();
  }
  return {gx, gw_re, gw_im, gb_re, gb_im};
}

const ConvBackend& backend() {
  static const ConvBackend b{plane_kernels(), &depthwise, &depthwise_backward};
  return b;
}

at::Tensor conv(const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im,
                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                at::IntArrayRef output_padding, int64_t groups, c10::string_view algorithm) {
  const c10::cuda::CUDAGuard guard(x.device());
  return conv_forward(x, weight_re, weight_im, bias_re, bias_im,
                      conv_params(stride, padding, dilation, transposed, output_padding, groups), algorithm, backend());
}

ConvGrads conv_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                        const at::Tensor& weight_im, at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding, int64_t groups,
                        c10::string_view algorithm, std::array<bool, 3> output_mask) {
  const c10::cuda::CUDAGuard guard(x.device());
  return cplxfast::conv_backward(grad, x, weight_re, weight_im,
                                 conv_params(stride, padding, dilation, transposed, output_padding, groups), algorithm,
                                 output_mask, backend());
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CUDA, m) {
  m.impl("conv", &conv);
  m.impl("conv_backward", &conv_backward);
}

}  // namespace cplxfast::cuda
