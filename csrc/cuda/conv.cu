// Complex convolution on CUDA: the 3M/4M driver (common/conv.cpp) with the CUDA plane
// kernels and cuDNN's real convolution, and a fused direct kernel for depthwise convolution.
//
// Depthwise (groups == channels, 1d/2d, contiguous): the forward pass is one thread per output
// element, accumulating the complex taps in registers (input reads coalesced along the row);
// grad_x is one thread per input element, gathering g conj(W) over the taps that reach it (no
// atomics); grad_W is a grid of (channel x tap, split) blocks, each reducing g conj(x) over one
// slice of batch and space in double, the slices' partial sums then added in a fixed order (no
// atomics: reproducible bit for bit); grad_b is a sum of g. Flat indices are 32-bit where the
// tensors allow.
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/conv.h"
#include "cuda/channel_sums.cuh"
#include "cuda/kernel_utils.cuh"
#include "cuda/planes.h"
#include "cuda/reparam.h"

namespace cplxfast::cuda {
namespace {

template <typename T>
using Cx = Pair<T>;

using Depthwise = DepthwiseGeometry;

// (row, col, plane) of flat index i over [planes, rows, cols], divisions in I.
template <typename I>
__device__ __forceinline__ void unflatten(I i, I rows, I cols, int64_t& r, int64_t& c, int64_t& plane) {
  const I q = i / cols;
  c = i - q * cols;
  plane = q / rows;
  r = q - I(plane) * rows;
}

template <typename T, typename I>
__global__ void depthwise_forward_kernel(const Cx<T>* __restrict__ x, const T* __restrict__ wr,
                                         const T* __restrict__ wi, const T* __restrict__ br,
                                         const T* __restrict__ bi, Depthwise d, Cx<T>* __restrict__ y) {
  const I n = I(d.B * d.C * d.OH * d.OW), OH = I(d.OH), OW = I(d.OW);
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    int64_t oh, ow, plane;
    unflatten(i, OH, OW, oh, ow, plane);
    const int64_t c = I(plane) % I(d.C);
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
template <typename T, typename I>
__global__ void depthwise_grad_input_kernel(const Cx<T>* __restrict__ g, const T* __restrict__ wr,
                                            const T* __restrict__ wi, Depthwise d, Cx<T>* __restrict__ gx) {
  const I n = I(d.B * d.C * d.H * d.W), H = I(d.H), W = I(d.W);
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    int64_t ih, iw, plane;
    unflatten(i, H, W, ih, iw, plane);
    const int64_t c = I(plane) % I(d.C);
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

// Block (channel x tap, split): the partial sum of g conj(x) over the split's slice of the
// (b, oh, ow) positions, accumulated in double for float inputs too (long reductions), written to
// partials[split][channel x tap][re, im].
template <typename T, typename I>
__global__ void depthwise_grad_weight_kernel(const Cx<T>* __restrict__ g, const Cx<T>* __restrict__ x, Depthwise d,
                                             double* __restrict__ partials) {
  const int64_t K = d.KH * d.KW, ct = blockIdx.x, c = ct / K, t = ct % K, kh = t / d.KW, kw = t % d.KW;
  const I OH = I(d.OH), OW = I(d.OW), n = I(d.B * d.OH * d.OW);
  double acc[2] = {0, 0};
  for (I i = blockIdx.y * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.y) * blockDim.x) {
    int64_t oh, ow, b;
    unflatten(i, OH, OW, oh, ow, b);
    const int64_t ih = oh * d.sh - d.ph + kh * d.dh, iw = ow * d.sw - d.pw + kw * d.dw;
    if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;
    const int64_t plane = b * d.C + c;
    const Cx<T> gv = g[(plane * d.OH + oh) * d.OW + ow], xv = x[(plane * d.H + ih) * d.W + iw];
    acc[0] += double(gv.re) * xv.re + double(gv.im) * xv.im;
    acc[1] += double(gv.im) * xv.re - double(gv.re) * xv.im;
  }
  block_sum<2>(acc);
  if (threadIdx.x == 0) {
    double* out = partials + (blockIdx.y * int64_t{gridDim.x} + ct) * 2;
    out[0] = acc[0];
    out[1] = acc[1];
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
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(weight_re.scalar_type(), "cplxfast_depthwise_cuda", [&] {
    using C = Cx<scalar_t>;
    with_index_type(std::max(y.numel(), x.numel()), [&](auto index) {
      using I = decltype(index);
      depthwise_forward_kernel<scalar_t, I><<<grid_for(y.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          reinterpret_cast<const C*>(x.data_ptr()), wr.data_ptr<scalar_t>(), wi.data_ptr<scalar_t>(),
          br.defined() ? br.data_ptr<scalar_t>() : nullptr, bi.defined() ? bi.data_ptr<scalar_t>() : nullptr, d,
          reinterpret_cast<C*>(y.data_ptr()));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
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
    with_index_type(std::max(g.numel(), x.numel()), [&](auto index) {
      using I = decltype(index);
      if (mask[0]) {
        gx = at::empty(x.sizes(), x.options());
        if (gx.numel() > 0) {
          depthwise_grad_input_kernel<scalar_t, I><<<grid_for(gx.numel()), kThreads, 0, stream>>>(
              reinterpret_cast<const C*>(g.data_ptr()), wr.data_ptr<scalar_t>(), wi.data_ptr<scalar_t>(), d,
              reinterpret_cast<C*>(gx.data_ptr()));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      }
      if (mask[1]) {
        const int64_t taps = d.C * d.KH * d.KW, n = d.B * d.OH * d.OW;
        if (taps > 0 && n > 0) {
          const int64_t splits = reduction_splits(taps, n, kThreads);
          const at::Tensor partials = at::empty({splits, taps, 2}, x.options().dtype(at::kDouble));
          depthwise_grad_weight_kernel<scalar_t, I>
              <<<dim3(static_cast<unsigned>(taps), static_cast<unsigned>(splits)), kThreads, 0, stream>>>(
                  reinterpret_cast<const C*>(g.data_ptr()), reinterpret_cast<const C*>(x.data_ptr()), d,
                  partials.data_ptr<double>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          const at::Tensor sums = sum_splits(partials).to(wr.scalar_type());  // [taps, 2]
          gw_re = sums.select(1, 0).reshape(weight_re.sizes()).contiguous();
          gw_im = sums.select(1, 1).reshape(weight_re.sizes()).contiguous();
        } else {
          gw_re = at::zeros(weight_re.sizes(), wr.options());
          gw_im = at::zeros(weight_re.sizes(), wr.options());
        }
      }
    });
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

// cuDNN runs bf16 and fp16 convolutions on the tensor cores.
bool native_16bit(at::ScalarType) { return true; }

const ConvBackend& backend() {
  static const ConvBackend b{plane_kernels(), &depthwise, &depthwise_backward, &native_16bit};
  return b;
}

at::Tensor conv(const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im,
                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                at::IntArrayRef output_padding, int64_t groups, c10::string_view algorithm,
                std::optional<at::ScalarType> operand_dtype, const c10::optional<at::Tensor>& weight_mask) {
  const auto guard = device_guard("cplxfast.conv", x);
  return conv_forward(x, weight_re, weight_im, bias_re, bias_im, weight_mask,
                      conv_params(stride, padding, dilation, transposed, output_padding, groups, operand_dtype), algorithm, backend());
}

ConvGrads conv_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                        const at::Tensor& weight_im, at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding, int64_t groups,
                        c10::string_view algorithm, std::array<bool, 3> output_mask,
                        std::optional<at::ScalarType> operand_dtype, const c10::optional<at::Tensor>& weight_mask) {
  const auto guard = device_guard("cplxfast.conv_backward", x);
  return cplxfast::conv_backward(grad, x, weight_re, weight_im, weight_mask,
                                 conv_params(stride, padding, dilation, transposed, output_padding, groups, operand_dtype), algorithm,
                                 output_mask, backend());
}

at::Tensor conv_complex(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                        at::IntArrayRef output_padding, int64_t groups, c10::string_view algorithm,
                std::optional<at::ScalarType> operand_dtype) {
  const auto guard = device_guard("cplxfast.conv_complex", x);
  return conv_complex_forward(x, weight, bias, conv_params(stride, padding, dilation, transposed, output_padding, groups, operand_dtype),
                              algorithm, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_complex_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding, int64_t groups,
    c10::string_view algorithm, std::array<bool, 3> output_mask, std::optional<at::ScalarType> operand_dtype) {
  const auto guard = device_guard("cplxfast.conv_complex_backward", x);
  return cplxfast::conv_complex_backward(grad, x, weight,
                                         conv_params(stride, padding, dilation, transposed, output_padding, groups, operand_dtype),
                                         algorithm, output_mask, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_gaussian(
    const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im, const at::Tensor& log_sigma2,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    c10::string_view algorithm) {
  const auto guard = device_guard("cplxfast.conv_gaussian", x);
  const std::vector<int64_t> no_output_padding(stride.size(), 0);
  return conv_gaussian_forward(x, weight_re, weight_im, bias_re, bias_im, log_sigma2,
                               conv_params(stride, padding, dilation, false, no_output_padding, groups, std::nullopt),
                               algorithm, backend(), noise_kernels());
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CUDA, m) {
  m.impl("conv", &conv);
  m.impl("conv_backward", &conv_backward);
  m.impl("conv_complex", &conv_complex);
  m.impl("conv_complex_backward", &conv_complex_backward);
  m.impl("conv_gaussian", &conv_gaussian);
}

}  // namespace cplxfast::cuda
