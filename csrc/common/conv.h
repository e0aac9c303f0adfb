// Complex convolution and transposed convolution (1d/2d/3d), device-agnostic.
//
// y = conv(x, W) + b is bilinear in (x, W), so it takes the Gauss trick exactly like a GEMM:
// with the planes of x and W (common/planes.h), P_j = conv(x_j, W_j) and
// Re y = P0 - P1, Im y = P2 - P0 - P1. One split pass writes x's three planes plane-major (each
// a dense activation in x's memory format), three real convolutions of the backend (oneDNN on
// CPU, cuDNN on CUDA) compute the products, and one combine pass writes the complex result. (One
// grouped convolution of 3 x groups groups over row-interleaved planes was measured slower on
// oneDNN: fwd 28-31 ms against 25-27 ms for three calls, bwd 63-64 against 49-52 ms.) The bias
// rides in the backend calls: plane 0 gets Re b and plane 2 Re b + Im b, which the recombination
// turns into exactly b.
//
// "4m" is the componentwise-accurate form: two planes (re, im) per group and the real block
// weight [[Wr, -Wi], [Wi, Wr]] in one real convolution of twice the channels (4 real
// multiplications per complex one, no cancellation).
//
// Backward: grad_x is the input-gradient map of the convolution applied to (g, conj W), grad_W
// its weight-gradient map applied to (g, conj x); both are bilinear and take the same trick,
// one at::convolution_backward call per plane (3M; grad_bias comes with planes 0 and 1) or one
// on the block form (4M).
//
// Depthwise convolution (groups == in == out channels, 1d/2d, contiguous) is memory-bound:
// backends may give a fused direct kernel for it, used by "auto" and "4m" (its arithmetic is
// the componentwise-accurate 4M form); "3m" always takes the 3M path.
//
// Small pointwise convolutions (1x1 kernel, stride 1, no padding, one group, C_in C_out <=
// kSmallPointwise) are memory-bound GEMMs over the channels: on backends that measured it
// (ConvBackend::small_pointwise_gemm, the CPU), "auto" runs them as the backend's complex GEMM of the
// interleaved data (4M arithmetic, componentwise accurate), without 3M's plane passes.
//
// Mixed precision (operand_dtype bf16/fp16, complex64; set under torch.autocast): the block form
// for every algorithm, its planes and block weight rounded to 16 bits. Where the backend has
// 16-bit convolution units (cuDNN; a CPU with AVX512-BF16/AMX or AVX512-FP16) one 16-bit
// convolution computes it, accumulating in float32 and returning 16-bit results, which the block
// form (no recombination after it) turns into float32 parts each within 16-bit rounding of its own
// value; 3M's recombination would cancel such rounded products, hence the block form. Elsewhere
// the rounded operands go to the float32 convolution: the same products (16-bit products are exact
// in float32), float32 results, float32's speed. The fused depthwise kernel is memory-bound and
// keeps full precision, as torch's autocast policy does for memory-bound ops.
#pragma once
#include <array>
#include <optional>
#include <tuple>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include "common/planes.h"

namespace cplxfast {

struct NoiseKernels;  // common/reparam.h

// torch's convolution parameters, one entry per spatial dim, and the precision of the real
// products (the ops' operand_dtype).
struct ConvParams {
  std::vector<int64_t> stride, padding, dilation, output_padding;
  bool transposed;
  int64_t groups;
  std::optional<at::ScalarType> operand_dtype;
};

ConvParams conv_params(at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                       at::IntArrayRef output_padding, int64_t groups, std::optional<at::ScalarType> operand_dtype);

// Geometry of a depthwise convolution for the fused kernels; a 1-d one is a 2-d one of height 1.
struct DepthwiseGeometry {
  int64_t B, C, H, W, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW;
};
DepthwiseGeometry depthwise_geometry(const at::Tensor& x, const at::Tensor& weight, const ConvParams& p);

using ConvGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

struct ConvBackend {
  PlaneKernels planes;
  // Fused depthwise kernels (see is_fused_depthwise), or nullptr. Arguments are validated;
  // bias_re/bias_im are both defined or both undefined.
  at::Tensor (*depthwise)(const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                          const at::Tensor& bias_re, const at::Tensor& bias_im, const ConvParams& p);
  ConvGrads (*depthwise_backward)(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                                  const at::Tensor& weight_im, const ConvParams& p, std::array<bool, 3> output_mask);
  // Whether the backend's convolutions of this 16-bit dtype run on 16-bit units (mixed precision).
  bool (*native_16bit)(at::ScalarType dtype);
  // Whether "auto" runs small pointwise convolutions as complex GEMMs (measured faster there).
  bool small_pointwise_gemm = false;
};

// Whether the fused depthwise kernel applies: not transposed, groups == in == out channels,
// 1 or 2 spatial dims, x not channels_last.
bool is_fused_depthwise(const at::Tensor& x, const at::Tensor& weight_re, const ConvParams& p);

// y = conv(x, W) + b; x [B, C_in, *S] complex, W = weight_re + i weight_im
// ([C_out, C_in / groups, *k], or [C_in, C_out / groups, *k] when transposed), b [C_out].
// The result is channels_last when x is (4-D/5-D), else contiguous.
// weight_mask (a masked layer's mask, real, weight_re's shape): the op computes with W * mask
// and returns grad_W * mask, the mask applied where the weight is read (the 3M weight planes, the
// 4M block weight) and its gradient written: no masked copy of W. The fused depthwise kernel
// reads the weight per output element, so it gets masked parts ([C, 1, *k], C k elements).
at::Tensor conv_forward(
    const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im,
    const c10::optional<at::Tensor>& weight_mask, const ConvParams& p, c10::string_view algorithm,
    const ConvBackend& backend);

// The Gaussian (variational dropout) layer's training forward (common/reparam.h), fused, for a
// convolution (not transposed, full precision): (out, s2, rng) with mu = conv(x, W) + b,
// s2 = conv(|x|^2, exp(log_sigma2)) (log_sigma2 real, the weight's shape) and out = mu +
// e sqrt(max(s2, 1e-8)), e drawn from the state rng that gaussian_reparam_backward(grad, s2, rng)
// draws again. On the 3M path |x|^2 is a fourth plane of the split pass and the noise is added in
// the recombination; elsewhere (4M, the fused depthwise kernel) the plain layer, then the noise.
std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_gaussian_forward(
    const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im, const at::Tensor& log_sigma2,
    const ConvParams& p, c10::string_view algorithm, const ConvBackend& backend, const NoiseKernels& noise);

// (grad_x, grad_weight_re, grad_weight_im, grad_bias_re, grad_bias_im) where output_mask
// (x, weight, bias) says; the others are undefined. grad_x has x's memory format.
ConvGrads conv_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& weight_mask, const ConvParams& p, c10::string_view algorithm,
    std::array<bool, 3> output_mask, const ConvBackend& backend);

// The same with a complex weight and bias (native complex parameters): their real/imag views go
// to the same driver, no copy; the gradients come back complex, (grad_x, grad_weight, grad_bias).
at::Tensor conv_complex_forward(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                const ConvParams& p, c10::string_view algorithm, const ConvBackend& backend);
std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_complex_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, const ConvParams& p,
    c10::string_view algorithm, std::array<bool, 3> output_mask, const ConvBackend& backend);

// Output spatial sizes (validated: clear errors for geometry torch would reject).
std::vector<int64_t> conv_output_sizes(const char* op, const at::Tensor& x, const at::Tensor& weight_re,
                                       const ConvParams& p);

}  // namespace cplxfast
