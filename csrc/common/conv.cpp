// Device-agnostic driver of complex (transposed) convolution; see conv.h.
#include "common/conv.h"

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>

#include "common/checks.h"
#include "common/layout.h"
#include "common/precision.h"
#include "common/reparam.h"
#include "common/workspace.h"

namespace cplxfast {
namespace {

enum class ConvAlgorithm { k3M, k4M, kDepthwise, kComplexGemm };

// depthwise_ok: the backend's fused depthwise kernel applies; gemm_ok: "auto" may take the complex
// GEMM of a small pointwise convolution.
ConvAlgorithm resolve_algorithm(const char* op, c10::string_view name, bool depthwise_ok, bool gemm_ok = false) {
  if (name == "3m") return ConvAlgorithm::k3M;
  if (name == "4m") return depthwise_ok ? ConvAlgorithm::kDepthwise : ConvAlgorithm::k4M;
  if (name == "auto") {
    if (depthwise_ok) return ConvAlgorithm::kDepthwise;
    return gemm_ok ? ConvAlgorithm::kComplexGemm : ConvAlgorithm::k3M;
  }
  TORCH_CHECK(false, op, ": algorithm must be \"auto\", \"3m\" or \"4m\", got \"", name, "\"");
  return ConvAlgorithm::k3M;
}

std::string spatial_name(int64_t i, int64_t n) {
  static const char* names3[] = {"depth", "height", "width"};
  return n == 1 ? std::string("length") : std::string(names3[3 - n + i]);
}

void check_conv_args(const char* op, const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                     const at::Tensor* bias_re, const at::Tensor* bias_im, const ConvParams& p) {
  check_complex(op, "input", x);
  check_real_part(op, "weight_re", weight_re, x);
  check_real_part(op, "weight_im", weight_im, x);
  TORCH_CHECK(
      weight_re.sizes() == weight_im.sizes(), op, ": weight_re has shape ", weight_re.sizes(),
      " but weight_im has shape ", weight_im.sizes());
  const int64_t n = weight_re.dim() - 2;
  TORCH_CHECK(n >= 1 && n <= 3, op, ": weight must be [out, in / groups, *kernel] with 1 to 3 kernel dims, got shape ",
              weight_re.sizes());
  TORCH_CHECK(
      x.dim() == n + 2, op, ": a ", n, "-d convolution expects a ", n + 2, "-D input [batch, channels, ",
      n == 1 ? "length" : n == 2 ? "height, width" : "depth, height, width", "], got shape ", x.sizes());
  const auto check_len = [&](const std::vector<int64_t>& v, const char* name, int64_t min) {
    TORCH_CHECK(static_cast<int64_t>(v.size()) == n, op, ": ", name, " must have ", n, " entries, got ", v.size());
    for (int64_t s : v) TORCH_CHECK(s >= min, op, ": ", name, " must be >= ", min, ", got ", at::IntArrayRef(v));
  };
  check_len(p.stride, "stride", 1);
  check_len(p.padding, "padding", 0);
  check_len(p.dilation, "dilation", 1);
  check_len(p.output_padding, "output_padding", 0);
  TORCH_CHECK(p.groups >= 1, op, ": groups must be >= 1, got ", p.groups);
  const int64_t C = x.size(1);
  int64_t C_out;
  if (p.transposed) {
    TORCH_CHECK(
        weight_re.size(0) == C, op, ": input has ", C, " channels but the transposed-convolution weight ",
        weight_re.sizes(), " expects in_channels=", weight_re.size(0));
    TORCH_CHECK(C % p.groups == 0, op, ": in_channels=", C, " is not divisible by groups=", p.groups);
    C_out = weight_re.size(1) * p.groups;
    for (int64_t i = 0; i < n; ++i) {
      TORCH_CHECK(
          p.output_padding[i] < std::max(p.stride[i], p.dilation[i]), op, ": output_padding must be smaller than ",
          "stride or dilation, got output_padding=", at::IntArrayRef(p.output_padding), ", stride=",
          at::IntArrayRef(p.stride), ", dilation=", at::IntArrayRef(p.dilation));
    }
  } else {
    TORCH_CHECK(C % p.groups == 0, op, ": in_channels=", C, " is not divisible by groups=", p.groups);
    TORCH_CHECK(
        weight_re.size(1) * p.groups == C, op, ": input has ", C, " channels but the weight ", weight_re.sizes(),
        " with groups=", p.groups, " expects ", weight_re.size(1) * p.groups);
    C_out = weight_re.size(0);
    TORCH_CHECK(C_out % p.groups == 0, op, ": out_channels=", C_out, " is not divisible by groups=", p.groups);
    for (int64_t s : p.output_padding) TORCH_CHECK(s == 0, op, ": output_padding is only for transposed convolution");
  }
  TORCH_CHECK((bias_re == nullptr) == (bias_im == nullptr), op, ": give both bias_re and bias_im, or neither");
  if (bias_re != nullptr) {
    check_real_part(op, "bias_re", *bias_re, x);
    check_real_part(op, "bias_im", *bias_im, x);
    for (const at::Tensor* b : {bias_re, bias_im}) {
      TORCH_CHECK(b->dim() == 1 && b->size(0) == C_out, op, ": bias must have shape [", C_out,
                  "] (out_channels), got ", b->sizes());
    }
  }
}

std::vector<int64_t> output_shape(const char* op, const at::Tensor& x, const at::Tensor& w, const ConvParams& p) {
  std::vector<int64_t> shape{x.size(0), p.transposed ? w.size(1) * p.groups : w.size(0)};
  for (int64_t s : conv_output_sizes(op, x, w, p)) shape.push_back(s);
  return shape;
}

// ---- The layout of activations and their planes.
//
// An activation [B, C, *S] is dense in format fmt: contiguous (memory order [B, C, *S]) or
// channels_last ([B, *S, C]). Read in memory order, it is a [rows, cols] matrix whose rows are
// (batch, group) or (batch, pixel, group) and whose cols are a group's channels (and pixels):
// rows = B * g, cols = C / g * |S| (contiguous) or rows = B * |S| * g, cols = C / g.
//   3M (groups = 1 here): P = 3 planes stored plane-major, [P, rows, cols], each plane a dense
//      activation in fmt for its own backend call.
//   4M (the layer's groups): planes interleaved per row, [rows, P, cols], which is the channel
//      order (group, plane, channel) of one real convolution of P x C channels.
struct Layout {
  at::MemoryFormat fmt;
  int64_t groups;

  bool channels_last() const { return fmt != at::MemoryFormat::Contiguous; }

  int64_t cols(at::IntArrayRef sizes) const {
    const int64_t per_group = sizes[1] / groups;
    return channels_last() ? per_group : per_group * c10::multiply_integers(sizes.begin() + 2, sizes.end());
  }

  int64_t rows(at::IntArrayRef sizes) const { return c10::multiply_integers(sizes) / cols(sizes); }

  // [B, C, *S] -> memory order ([B, *S, C] for channels_last), a permuted view.
  at::Tensor memory_order(const at::Tensor& t) const {
    if (!channels_last()) return t;
    std::vector<int64_t> perm{0};
    for (int64_t d = 2; d < t.dim(); ++d) perm.push_back(d);
    perm.push_back(1);
    return t.permute(perm);
  }

  // The [rows, cols] matrix of a tensor (a copy only if it is not dense in fmt).
  at::Tensor matrix(const at::Tensor& t) const {
    return memory_order(t.contiguous(fmt)).view({rows(t.sizes()), cols(t.sizes())});
  }

  // The (re, im) matrices of a complex activation.
  ComplexPair parts(const at::Tensor& z) const {
    const at::Tensor m = matrix(z);
    return {at::real(m), at::imag(m)};
  }

  // Plane-major buffer [P, rows, cols] for P planes of an activation with these sizes, each plane
  // starting aligned.
  at::Tensor plane_major(at::IntArrayRef sizes, int64_t P, Workspace& ws) const {
    const int64_t r = rows(sizes), c = cols(sizes);
    return Workspace::planes_in(ws.take(P * Workspace::plane_stride(r, c)), P, r, c);
  }

  // Row-interleaved buffer, seen as its planes [P, rows, cols] (the storage is [rows, P, cols]).
  at::Tensor row_interleaved(at::IntArrayRef sizes, int64_t P, Workspace& ws) const {
    return ws.take(P * c10::multiply_integers(sizes)).view({rows(sizes), P, cols(sizes)}).transpose(0, 1);
  }

  // Planes as the real convolution operand [B, P * C, *S] in fmt: one plane of a plane-major
  // buffer (P = 1), or all P planes of a row-interleaved one.
  at::Tensor as_operand(const at::Tensor& planes, at::IntArrayRef sizes, int64_t P) const {
    const at::Tensor storage = P == 1 ? planes : planes.transpose(0, 1);
    std::vector<int64_t> mem{sizes[0]};
    if (channels_last()) {
      mem.insert(mem.end(), sizes.begin() + 2, sizes.end());
      mem.push_back(P * sizes[1]);
      std::vector<int64_t> perm{0, static_cast<int64_t>(sizes.size()) - 1};
      for (int64_t d = 1; d < static_cast<int64_t>(sizes.size()) - 1; ++d) perm.push_back(d);
      return storage.view(mem).permute(perm);
    }
    mem.push_back(P * sizes[1]);
    mem.insert(mem.end(), sizes.begin() + 2, sizes.end());
    return storage.view(mem);
  }

  // The planes of a real convolution result [B, P * C, *S] with row-interleaved channels (a
  // copy only if the backend returned another format).
  std::vector<at::Tensor> planes_of(const at::Tensor& y, int64_t P) const {
    std::vector<int64_t> sizes = y.sizes().vec();
    sizes[1] /= P;
    return memory_order(y.contiguous(fmt)).reshape({rows(sizes), P, cols(sizes)}).unbind(1);
  }
};

at::MemoryFormat activation_format(const at::Tensor& x) {
  return x.dim() >= 4 ? x.suggest_memory_format() : at::MemoryFormat::Contiguous;
}

// A conv weight is a ComplexPair W = re + i im [A, B, *k] with its mask (masked_pair) as the
// scale, re's shape. As [A, rest] matrices, the form the plane kernels take:
ComplexPair weight_parts(const ComplexPair& w) {
  const auto mat = [&](const at::Tensor& t) { return t.defined() ? t.reshape({w.re.size(0), -1}) : t; };
  return {mat(w.re), mat(w.im), mat(w.scale)};
}

// The three 3M weight planes of W (or conj W), mask applied, each a real weight with W's shape.
std::vector<at::Tensor> weight_planes(const PlaneKernels& k, const ComplexPair& w, bool conj) {
  std::vector<int64_t> sizes{3};
  sizes.insert(sizes.end(), w.re.sizes().begin(), w.re.sizes().end());
  const at::Tensor buf = at::empty(sizes, real_options(w.re));
  k.split(weight_parts(w), conj, buf.view({3, w.re.size(0), -1}).unbind(0));
  return buf.unbind(0);
}

// The 4M real block weight of W: per group, [[Wr, -s Wi], [s Wi, Wr]] over (rows of W's dim 0,
// rows of W's dim 1) with s = +1 for a convolution ([out][in]) and -1 for a transposed one
// ([in][out]): a real weight [2 A, 2 B, *k] for `groups` groups, mask applied as it is filled.
at::Tensor block_weight(const ComplexPair& w, int64_t groups, bool transposed) {
  const int64_t A = w.re.size(0) / groups, B = w.re.size(1);
  const std::vector<int64_t> g_sizes{groups, A, B, -1};
  const at::Tensor wr = w.re.reshape(g_sizes), wi = w.im.reshape(g_sizes);
  const at::Tensor m = w.scale.defined() ? w.scale.reshape(g_sizes) : at::Tensor();
  at::Tensor blk = at::empty({groups, 2, A, 2, B, wr.size(3)}, real_options(w.re));
  const auto fill = [&](int64_t a, int64_t b, const at::Tensor& part, bool negate) {
    at::Tensor dst = blk.select(3, b).select(1, a);
    m.defined() ? at::mul_out(dst, part, m) : dst.copy_(part);
    if (negate) dst.neg_();
  };
  fill(0, 0, wr, false);
  fill(0, 1, wi, !transposed);
  fill(1, 0, wi, transposed);
  fill(1, 1, wr, false);
  std::vector<int64_t> sizes = w.re.sizes().vec();
  sizes[0] *= 2;
  sizes[1] *= 2;
  return blk.view(sizes);
}

// (grad Wr, grad Wi) from the gradient of the block weight, times W's mask (in place).
std::pair<at::Tensor, at::Tensor> block_weight_grad(const at::Tensor& gblk, const ComplexPair& w, int64_t groups,
                                                    bool transposed) {
  const at::Tensor G = gblk.reshape({groups, 2, w.re.size(0) / groups, 2, w.re.size(1), -1});
  const auto part = [&](int64_t a, int64_t b) { return G.select(3, b).select(1, a); };
  const at::Tensor g_re = (part(0, 0) + part(1, 1)).contiguous().view(w.re.sizes());
  const at::Tensor g_im =
      (transposed ? part(0, 1) - part(1, 0) : part(1, 0) - part(0, 1)).contiguous().view(w.re.sizes());
  if (w.scale.defined()) g_re.mul_(w.scale), g_im.mul_(w.scale);
  return {g_re, g_im};
}

// The fused depthwise kernels read the weight per output element: they get masked parts (a
// [C, 1, *k] weight, C k elements), and their weight gradient is masked after.
std::pair<at::Tensor, at::Tensor> depthwise_parts(const ComplexPair& w) {
  if (!w.scale.defined()) return {w.re, w.im};
  return {w.re * w.scale, w.im * w.scale};
}

// The backend's bias for the 4M block convolution, in its channel order (group, plane, channel).
at::Tensor block_bias(const at::Tensor& b_re, const at::Tensor& b_im, int64_t groups) {
  return at::stack({b_re.reshape({groups, -1}), b_im.reshape({groups, -1})}, 1).reshape({-1});
}

std::vector<int64_t> batch_and_spatial_dims(const at::Tensor& t) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < t.dim(); ++d) dims.push_back(d);
  return dims;
}

// One real convolution of 16-bit operands with float32 results (mixed precision, conv.h): on the
// backend's 16-bit units (results rounded to 16 bits), or as the float32 convolution of the rounded
// operands. The bias (float32) is added as the result's own precision allows.
at::Tensor mixed_convolution(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const ConvParams& p,
                             bool native) {
  if (native) {
    const at::Tensor b = bias.defined() ? bias.to(x.scalar_type()) : bias;
    return at::convolution(x, w, b, p.stride, p.padding, p.dilation, p.transposed, p.output_padding, p.groups)
        .to(at::kFloat);
  }
  return at::convolution(x.to(at::kFloat), w.to(at::kFloat), bias, p.stride, p.padding, p.dilation, p.transposed,
                         p.output_padding, p.groups);
}

// The convolution of an input with no elements (zero channels or an empty spatial extent,
// with padding around it): the bias everywhere.
at::Tensor zero_input_result(at::Tensor& y, const at::Tensor* b_re, const at::Tensor* b_im) {
  y.zero_();
  if (b_re != nullptr) {
    std::vector<int64_t> shape(y.dim(), 1);
    shape[1] = y.size(1);
    y.add_(at::complex(*b_re, *b_im).view(shape));
  }
  return y;
}

// The three 3M products [rows, cols] of x's planes (plane-major, the first three of x_planes) with
// W's, by backend convolutions. The bias rides in them: plane 0 gets Re b and plane 2 Re b + Im b,
// which the recombination turns into exactly b.
std::vector<at::Tensor> gauss_products(const Layout& layout, const at::Tensor& x, const at::Tensor& x_planes,
                                       const ComplexPair& weight, const at::Tensor* b_re, const at::Tensor* b_im,
                                       const ConvParams& p, const PlaneKernels& kernels) {
  const std::vector<at::Tensor> w = weight_planes(kernels, weight, /*conj=*/false);
  const std::array<at::Tensor, 3> bias =
      b_re ? std::array<at::Tensor, 3>{*b_re, at::Tensor(), *b_re + *b_im} : std::array<at::Tensor, 3>{};
  std::vector<at::Tensor> products;
  for (int64_t j = 0; j < 3; ++j) {
    products.push_back(layout.matrix(at::convolution(
        layout.as_operand(x_planes[j], x.sizes(), 1), w[j], bias[j], p.stride, p.padding, p.dilation, p.transposed,
        p.output_padding, p.groups)));
  }
  return products;
}

}  // namespace

ConvParams conv_params(at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                       at::IntArrayRef output_padding, int64_t groups, std::optional<at::ScalarType> operand_dtype) {
  return {stride.vec(), padding.vec(), dilation.vec(), output_padding.vec(), transposed, groups, operand_dtype};
}

DepthwiseGeometry depthwise_geometry(const at::Tensor& x, const at::Tensor& w, const ConvParams& p) {
  DepthwiseGeometry d{x.size(0), x.size(1), 1, x.size(-1), 1, w.size(-1), 1, p.stride.back(), 0, p.padding.back(),
                      1, p.dilation.back(), 0, 0};
  if (x.dim() == 4) {
    d.H = x.size(2), d.KH = w.size(2), d.sh = p.stride[0], d.ph = p.padding[0], d.dh = p.dilation[0];
  }
  d.OH = (d.H + 2 * d.ph - d.dh * (d.KH - 1) - 1) / d.sh + 1;
  d.OW = (d.W + 2 * d.pw - d.dw * (d.KW - 1) - 1) / d.sw + 1;
  return d;
}

std::vector<int64_t> conv_output_sizes(const char* op, const at::Tensor& x, const at::Tensor& w, const ConvParams& p) {
  const int64_t n = x.dim() - 2;
  std::vector<int64_t> out(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t in = x.size(i + 2), k = w.size(i + 2);
    const int64_t span = p.dilation[i] * (k - 1) + 1;  // the dilated kernel
    if (p.transposed) {
      out[i] = (in - 1) * p.stride[i] - 2 * p.padding[i] + span + p.output_padding[i];
      TORCH_CHECK(out[i] > 0 || in == 0, op, ": the output ", spatial_name(i, n), " would be ", out[i],
                  " (input ", in, ", stride ", p.stride[i], ", padding ", p.padding[i], ", dilated kernel ", span,
                  "); reduce the padding");
    } else {
      TORCH_CHECK(
          in + 2 * p.padding[i] >= span, op, ": the kernel (", k, " with dilation ", p.dilation[i], " spans ", span,
          ") is larger than the padded input ", spatial_name(i, n), " (", in, " + 2 x padding ", p.padding[i], " = ",
          in + 2 * p.padding[i], ")");
      out[i] = (in + 2 * p.padding[i] - span) / p.stride[i] + 1;
    }
  }
  return out;
}

bool is_fused_depthwise(const at::Tensor& x, const at::Tensor& w, const ConvParams& p) {
  return !p.transposed && x.dim() <= 4 && p.groups == x.size(1) && w.size(0) == p.groups && w.size(1) == 1 &&
         activation_format(x) == at::MemoryFormat::Contiguous;
}

// ---- Small pointwise convolutions as complex GEMMs (conv.h). Measured on the 2-core development
// CPU (MKL; bench/RESULTS.md, 2026-12-07), fwd+bwd against 3M: 1.3-2.2x faster from 16 x 64 to
// 256 x 64 and 128 x 128 channels (batch 64, 128-512 positions), level at 256 x 256, slower from
// 512 x 512 on, where the GEMMs are compute-bound and 3M's fourth product saved pays.
constexpr int64_t kSmallPointwise = 128 * 256;

bool is_small_pointwise(const at::Tensor& w, const ConvParams& p) {
  if (p.transposed || p.groups != 1 || p.operand_dtype.has_value()) return false;
  for (size_t i = 0; i < p.stride.size(); ++i) {
    if (w.size(2 + i) != 1 || p.stride[i] != 1 || p.padding[i] != 0) return false;
  }
  return w.size(0) * w.size(1) <= kSmallPointwise;
}

// W (mask applied) as a complex [C_out, C_in] matrix: small, built per call.
at::Tensor pointwise_matrix(const ComplexPair& w) {
  at::Tensor re = w.re.resolve_neg(), im = w.im.resolve_neg();
  if (w.scale.defined()) re = re * w.scale, im = im * w.scale;
  return at::complex(re.reshape({re.size(0), re.size(1)}), im.reshape({im.size(0), im.size(1)}));
}

// An activation [B, C, *S] dense in fmt as the operand of the channel GEMM: contiguous, [B, C, N]
// (the GEMM is W [C_out, C] times each batch's [C, N]); channels_last, [B N, C] (times W^T).
at::Tensor pointwise_operand(const Layout& layout, const at::Tensor& t) {
  if (layout.channels_last()) return layout.memory_order(t).reshape({-1, t.size(1)});
  return t.view({t.size(0), t.size(1), -1});
}

// The inverse of pointwise_operand: a GEMM result with C channels as the activation of `sizes`.
at::Tensor pointwise_activation(const Layout& layout, const at::Tensor& m, at::IntArrayRef sizes) {
  if (!layout.channels_last()) return m.view(sizes);
  std::vector<int64_t> order{sizes[0]};
  for (size_t d = 2; d < sizes.size(); ++d) order.push_back(sizes[d]);
  order.push_back(sizes[1]);
  std::vector<int64_t> perm{0, static_cast<int64_t>(sizes.size()) - 1};
  for (int64_t d = 1; d + 1 < static_cast<int64_t>(sizes.size()); ++d) perm.push_back(d);
  return m.view(order).permute(perm);
}

at::Tensor pointwise_forward(const at::Tensor& x, const ComplexPair& weight, const at::Tensor* b_re,
                             const at::Tensor* b_im, at::IntArrayRef out_shape, at::MemoryFormat fmt) {
  const Layout layout{fmt, 1};
  const at::Tensor W = pointwise_matrix(weight), xm = pointwise_operand(layout, x);
  at::Tensor y = layout.channels_last() ? at::matmul(xm, W.transpose(0, 1)) : at::matmul(W, xm);
  if (b_re != nullptr) {
    const at::Tensor b = at::complex(b_re->resolve_neg(), b_im->resolve_neg());
    y.add_(layout.channels_last() ? b : b.unsqueeze(1));
  }
  return pointwise_activation(layout, y, out_shape);
}

// The real and imaginary parts of z as two fresh contiguous tensors of `sizes`. Not
// .contiguous(): on a one-element z it returns the strided views themselves, two outputs sharing
// one storage (an op's outputs must not alias).
std::pair<at::Tensor, at::Tensor> fresh_parts(const at::Tensor& z, at::IntArrayRef sizes) {
  return {at::real(z).reshape(sizes).clone(at::MemoryFormat::Contiguous),
          at::imag(z).reshape(sizes).clone(at::MemoryFormat::Contiguous)};
}

// grad_x = W^H g, grad_W = sum g x^H (mask applied), grad_b = sum g. The 2-D GEMMs take the
// conjugate-transposed operands as they are (BLAS's conjugate transpose). The batched one of
// grad_W in the contiguous layout copies its conjugated operand first, so the conjugate goes on
// the smaller of g and x: conj(grad_W) = sum conj(g) x^T where g has fewer channels (a block's
// projection, 4x fewer; bench/RESULTS.md: 5-22% off such a layer's fwd+bwd).
ConvGrads pointwise_backward(const at::Tensor& g, const at::Tensor& x, const ComplexPair& weight,
                             at::IntArrayRef weight_sizes, std::array<bool, 3> mask, at::MemoryFormat fmt) {
  const Layout layout{fmt, 1};
  const at::Tensor gm = pointwise_operand(layout, g), xm = pointwise_operand(layout, x);
  at::Tensor grad_x, gw_re, gw_im, gb_re, gb_im;
  if (mask[0]) {
    const at::Tensor W = pointwise_matrix(weight);
    const at::Tensor gx = layout.channels_last() ? at::matmul(gm, W.conj()) : at::matmul(W.mH(), gm);
    grad_x = pointwise_activation(layout, gx, x.sizes());
  }
  if (mask[1]) {  // [C_out, C_in]: channels_last from (x^H g)^T, else summed over the batch
    const at::Tensor gw = layout.channels_last()    ? at::matmul(xm.mH(), gm).transpose(0, 1)
                          : g.size(1) < x.size(1) ? at::matmul(gm.conj(), xm.transpose(1, 2)).sum(0).conj()
                                                  : at::matmul(gm, xm.mH()).sum(0);
    std::tie(gw_re, gw_im) = fresh_parts(gw, weight_sizes);
    if (weight.scale.defined()) gw_re.mul_(weight.scale), gw_im.mul_(weight.scale);
  }
  if (mask[2]) {
    const at::Tensor gb = at::sum(g, batch_and_spatial_dims(g));
    std::tie(gb_re, gb_im) = fresh_parts(gb, gb.sizes());
  }
  return {grad_x, gw_re, gw_im, gb_re, gb_im};
}

at::Tensor conv_forward(
    const at::Tensor& x_in, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im,
    const c10::optional<at::Tensor>& weight_mask, const ConvParams& p, c10::string_view algorithm,
    const ConvBackend& backend) {
  const char* op = "cplxfast.conv";
  const at::Tensor* b_re = present(bias_re);
  const at::Tensor* b_im = present(bias_im);
  const at::Tensor* mask = present(weight_mask);
  check_conv_args(op, x_in, weight_re, weight_im, b_re, b_im, p);
  if (mask != nullptr) check_weight_mask(op, *mask, weight_re, x_in);
  const ComplexPair weight = masked_pair(weight_re, weight_im, mask);
  const std::vector<int64_t> out_shape = output_shape(op, x_in, weight_re, p);
  const at::MemoryFormat fmt = activation_format(x_in);
  const Precision prec = resolve_precision(op, x_in, p.operand_dtype);
  auto algo = resolve_algorithm(op, algorithm, backend.depthwise != nullptr && is_fused_depthwise(x_in, weight_re, p),
                                backend.small_pointwise_gemm && is_small_pointwise(weight_re, p));
  if (prec.mixed && algo == ConvAlgorithm::k3M) algo = ConvAlgorithm::k4M;
  at::Tensor y = at::empty(out_shape, x_in.options().memory_format(fmt));
  if (y.numel() == 0) return y;
  if (x_in.numel() == 0) return zero_input_result(y, b_re, b_im);
  if (algo == ConvAlgorithm::kDepthwise) {
    const auto [w_re, w_im] = depthwise_parts(weight);
    return backend.depthwise(x_in, w_re, w_im, b_re ? *b_re : at::Tensor(), b_im ? *b_im : at::Tensor(), p);
  }
  if (algo == ConvAlgorithm::kComplexGemm) return pointwise_forward(x_in.contiguous(fmt), weight, b_re, b_im, out_shape, fmt);

  const at::Tensor x = x_in.contiguous(fmt);
  const int64_t P = algo == ConvAlgorithm::k4M ? 2 : 3;
  Workspace ws(x.options().dtype(prec.operands), P * Workspace::plane_stride(x.numel(), 1));
  if (algo == ConvAlgorithm::k4M) {
    const Layout layout{fmt, p.groups};
    const at::Tensor x_planes = layout.row_interleaved(x.sizes(), 2, ws);  // rounded to 16 bits when mixed
    backend.planes.split(layout.parts(x), /*conj=*/false, x_planes.unbind(0));
    const at::Tensor x_op = layout.as_operand(x_planes, x.sizes(), 2);
    const at::Tensor w_op = block_weight(weight, p.groups, p.transposed).to(prec.operands);
    const at::Tensor b_op = b_re ? block_bias(*b_re, *b_im, p.groups) : at::Tensor();
    const at::Tensor products =
        prec.mixed ? mixed_convolution(x_op, w_op, b_op, p, backend.native_16bit(prec.operands))
                   : at::convolution(x_op, w_op, b_op, p.stride, p.padding, p.dilation, p.transposed,
                                     p.output_padding, p.groups);
    backend.planes.combine(layout.planes_of(products, 2), ComplexPair{}, layout.parts(y));
    return y;
  }

  // 3M: three backend convolutions of the planes (gauss_products), recombined.
  const Layout layout{fmt, 1};
  const at::Tensor x_planes = layout.plane_major(x.sizes(), 3, ws);
  backend.planes.split(layout.parts(x), /*conj=*/false, x_planes.unbind(0));
  backend.planes.combine(gauss_products(layout, x, x_planes, weight, b_re, b_im, p, backend.planes), ComplexPair{},
                         layout.parts(y));
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_gaussian_forward(
    const at::Tensor& x_in, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im, const at::Tensor& log_sigma2,
    const ConvParams& p, c10::string_view algorithm, const ConvBackend& backend, const NoiseKernels& noise) {
  const char* op = "cplxfast.conv_gaussian";
  const at::Tensor* b_re = present(bias_re);
  const at::Tensor* b_im = present(bias_im);
  TORCH_INTERNAL_ASSERT(!p.transposed && !p.operand_dtype.has_value());
  check_conv_args(op, x_in, weight_re, weight_im, b_re, b_im, p);
  check_log_sigma2(op, log_sigma2, weight_re, x_in);
  const std::vector<int64_t> out_shape = output_shape(op, x_in, weight_re, p);
  const at::MemoryFormat fmt = activation_format(x_in);
  const at::Tensor sigma2 = log_sigma2.exp();
  // s2 = conv(|x|^2, exp(log_sigma2)), dense in the activations' format (its memory order is the
  // noise order).
  const auto variance = [&](const at::Tensor& modulus) {
    if (modulus.numel() == 0) return at::zeros(out_shape, real_options(x_in).memory_format(fmt));
    return at::convolution(modulus, sigma2, at::Tensor(), p.stride, p.padding, p.dilation, false, p.output_padding,
                           p.groups)
        .contiguous(fmt);
  };
  const auto algo =
      resolve_algorithm(op, algorithm, backend.depthwise != nullptr && is_fused_depthwise(x_in, weight_re, p));
  if (algo != ConvAlgorithm::k3M || x_in.numel() == 0 || c10::multiply_integers(out_shape) == 0) {
    // No planes to fuse into: the plain layer, then the noise pass.
    const at::Tensor mu =
        conv_forward(x_in, weight_re, weight_im, bias_re, bias_im, c10::nullopt, p, algorithm, backend);
    const at::Tensor s2 = variance(modulus_squared(x_in.contiguous(fmt)));
    auto [out, rng] = gaussian_reparam_op(mu, s2);
    return {out, s2, rng};
  }

  // As conv_forward's 3M, with a fourth plane of x (|x|^2), convolved with exp(log_sigma2), and
  // the noise added as the products are recombined.
  const at::Tensor x = x_in.contiguous(fmt);
  Workspace ws(real_options(x), 4 * Workspace::plane_stride(x.numel(), 1));
  const Layout layout{fmt, 1};
  const at::Tensor x_planes = layout.plane_major(x.sizes(), 4, ws);
  backend.planes.split(layout.parts(x), /*conj=*/false, x_planes.unbind(0));
  const std::vector<at::Tensor> products =
      gauss_products(layout, x, x_planes, ComplexPair{weight_re, weight_im}, b_re, b_im, p, backend.planes);
  const at::Tensor s2 = variance(layout.as_operand(x_planes[3], x.sizes(), 1));
  at::Tensor y = at::empty(out_shape, x.options().memory_format(fmt));
  at::Tensor rng = at::empty({2}, x.options().dtype(at::kLong));
  noise.draw(rng);
  noise.combine(products, ComplexPair{}, NoiseSource{layout.matrix(s2), 0, rng}, layout.parts(y));
  return {y, s2, rng};
}

ConvGrads conv_backward(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& weight_mask, const ConvParams& p, c10::string_view algorithm,
    std::array<bool, 3> output_mask, const ConvBackend& backend) {
  const char* op = "cplxfast.conv_backward";
  const at::Tensor* mask = present(weight_mask);
  check_conv_args(op, x_in, weight_re, weight_im, nullptr, nullptr, p);
  if (mask != nullptr) check_weight_mask(op, *mask, weight_re, x_in);
  const ComplexPair weight = masked_pair(weight_re, weight_im, mask);
  check_complex(op, "grad", grad_in);
  check_same_dtype_device(op, "grad", grad_in, x_in);
  const std::vector<int64_t> out_shape = output_shape(op, x_in, weight_re, p);
  TORCH_CHECK(grad_in.sizes().vec() == out_shape, op, ": grad has shape ", grad_in.sizes(),
              " but the output of the convolution has shape ", at::IntArrayRef(out_shape));
  const bool need_x = output_mask[0], need_w = output_mask[1], need_b = output_mask[2];
  const at::MemoryFormat fmt = activation_format(x_in);
  const int64_t C_out = out_shape[1];
  const auto ropts = real_options(x_in);
  const Precision prec = resolve_precision(op, x_in, p.operand_dtype);
  const auto bias_grad = [&] {  // the float32 sums of g (empty inputs; mixed precision)
    const at::Tensor gb = at::sum(grad_in, batch_and_spatial_dims(grad_in));
    return fresh_parts(gb, gb.sizes());
  };

  at::Tensor grad_x, gw_re, gw_im, gb_re, gb_im;
  if (grad_in.numel() == 0 || x_in.numel() == 0) {  // nothing flows: zero gradients
    if (need_x) grad_x = at::zeros_like(x_in, x_in.options().memory_format(fmt));
    if (need_w) gw_re = at::zeros(weight_re.sizes(), ropts), gw_im = at::zeros(weight_re.sizes(), ropts);
    if (need_b) std::tie(gb_re, gb_im) = bias_grad();
    return {grad_x, gw_re, gw_im, gb_re, gb_im};
  }
  auto algo = resolve_algorithm(op, algorithm, backend.depthwise_backward != nullptr && is_fused_depthwise(x_in, weight_re, p),
                                backend.small_pointwise_gemm && is_small_pointwise(weight_re, p));
  if (algo == ConvAlgorithm::kDepthwise) {
    const auto [w_re, w_im] = depthwise_parts(weight);
    ConvGrads grads = backend.depthwise_backward(grad_in, x_in, w_re, w_im, p, output_mask);
    if (need_w && weight.scale.defined()) std::get<1>(grads).mul_(weight.scale), std::get<2>(grads).mul_(weight.scale);
    return grads;
  }
  if (algo == ConvAlgorithm::kComplexGemm) {
    return pointwise_backward(grad_in.contiguous(fmt), x_in.contiguous(fmt), weight, weight_re.sizes(), output_mask, fmt);
  }
  if (!need_x && !need_w && !need_b) return {grad_x, gw_re, gw_im, gb_re, gb_im};
  if (prec.mixed && !need_x && !need_w) {
    std::tie(gb_re, gb_im) = bias_grad();
    return {grad_x, gw_re, gw_im, gb_re, gb_im};
  }
  if (prec.mixed) algo = ConvAlgorithm::k4M;

  const at::Tensor g = grad_in.contiguous(fmt), x = x_in.contiguous(fmt);
  const int64_t P = algo == ConvAlgorithm::k4M ? 2 : 3;
  // Mixed precision: 16-bit planes, and float32 operands for a backend without 16-bit units.
  const bool native = prec.mixed && backend.native_16bit(prec.operands);
  const auto operand_opts = x.options().dtype(prec.mixed && !native ? at::kFloat : prec.operands);
  const auto operand = [&](const at::Tensor& t) { return t.to(operand_opts.dtype()); };
  // x's planes are only read when the weight gradient is wanted; otherwise they are a shape
  // to the backend, and fresh (never touched) memory.
  Workspace ws(x.options().dtype(prec.operands),
               P * (Workspace::plane_stride(g.numel(), 1) + (need_w ? Workspace::plane_stride(x.numel(), 1) : 0)));
  const auto x_planes_of = [&](const Layout& layout) {
    if (need_w) return P == 2 ? layout.row_interleaved(x.sizes(), P, ws) : layout.plane_major(x.sizes(), P, ws);
    return P == 2 ? at::empty({layout.rows(x.sizes()), P, layout.cols(x.sizes())}, operand_opts).transpose(0, 1)
                  : at::empty({P, layout.rows(x.sizes()), layout.cols(x.sizes())}, operand_opts);
  };
  if (algo == ConvAlgorithm::k4M) {
    // The real block form: its transpose already conjugates, so x's own planes and the block
    // weight give grad_x and the block weight's gradient.
    const Layout layout{fmt, p.groups};
    const at::Tensor g_planes = layout.row_interleaved(g.sizes(), 2, ws);
    const at::Tensor x_planes = x_planes_of(layout);
    backend.planes.split(layout.parts(g), /*conj=*/false, g_planes.unbind(0));
    if (need_w) backend.planes.split(layout.parts(x), /*conj=*/false, x_planes.unbind(0));
    const std::vector<int64_t> bias_sizes{2 * C_out};
    // Mixed precision: the bias gradient is summed in float32 below, not by the 16-bit backend.
    const bool backend_bias = need_b && !prec.mixed;
    at::Tensor g_op = layout.as_operand(g_planes, g.sizes(), 2), x_op = layout.as_operand(x_planes, x.sizes(), 2);
    at::Tensor w_op = block_weight(weight, p.groups, p.transposed);
    if (prec.mixed) {
      g_op = operand(g_op), w_op = operand(w_op.to(prec.operands));
      if (need_w) x_op = operand(x_op);
    }
    auto [gi, gw, gb] = at::convolution_backward(
        g_op, x_op, w_op, backend_bias ? c10::OptionalIntArrayRef(bias_sizes) : c10::nullopt, p.stride, p.padding,
        p.dilation, p.transposed, p.output_padding, p.groups, {need_x, need_w, backend_bias});
    if (native) gi = need_x ? gi.to(at::kFloat) : gi, gw = need_w ? gw.to(at::kFloat) : gw;  // 16-bit results
    if (need_x) {
      grad_x = at::empty(x.sizes(), x.options().memory_format(fmt));
      backend.planes.combine(layout.planes_of(gi, 2), ComplexPair{}, layout.parts(grad_x));
    }
    if (need_w) std::tie(gw_re, gw_im) = block_weight_grad(gw, weight, p.groups, p.transposed);
    if (backend_bias) {
      const at::Tensor gbp = gb.view({p.groups, 2, -1});
      gb_re = gbp.select(1, 0).reshape({-1}).clone(), gb_im = gbp.select(1, 1).reshape({-1}).clone();
    } else if (need_b) {
      std::tie(gb_re, gb_im) = bias_grad();
    }
    return {grad_x, gw_re, gw_im, gb_re, gb_im};
  }

  // 3M: per plane j, one backend call gives the input gradient of (g_j, conj(W)_j), the weight
  // gradient of (g_j, conj(x)_j), and for j = 0, 1 the sums of Re g and Im g (the bias
  // gradient). An operand whose gradient partner is not wanted is only a shape to the backend.
  const Layout layout{fmt, 1};
  const at::Tensor g_planes = layout.plane_major(g.sizes(), 3, ws);
  const at::Tensor x_planes = x_planes_of(layout);
  backend.planes.split(layout.parts(g), /*conj=*/false, g_planes.unbind(0));
  if (need_w) backend.planes.split(layout.parts(x), /*conj=*/true, x_planes.unbind(0));
  const std::vector<at::Tensor> w = need_x ? weight_planes(backend.planes, weight, /*conj=*/true)
                                           : std::vector<at::Tensor>(3, at::empty(weight_re.sizes(), ropts));
  const std::vector<int64_t> bias_sizes{C_out};
  std::vector<at::Tensor> gi(3), gw(3), gb(3);
  for (int64_t j = 0; j < 3; ++j) {
    const bool bias_j = need_b && j < 2;
    std::tie(gi[j], gw[j], gb[j]) = at::convolution_backward(
        layout.as_operand(g_planes[j], g.sizes(), 1), layout.as_operand(x_planes[j], x.sizes(), 1), w[j],
        bias_j ? c10::OptionalIntArrayRef(bias_sizes) : c10::nullopt, p.stride, p.padding, p.dilation, p.transposed,
        p.output_padding, p.groups, {need_x, need_w, bias_j});
  }
  if (need_x) {
    grad_x = at::empty(x.sizes(), x.options().memory_format(fmt));
    backend.planes.combine({layout.matrix(gi[0]), layout.matrix(gi[1]), layout.matrix(gi[2])}, ComplexPair{},
                           layout.parts(grad_x));
  }
  if (need_w) {
    gw_re = at::empty(weight_re.sizes(), ropts);
    gw_im = at::empty(weight_re.sizes(), ropts);
    const auto mat = [](const at::Tensor& t) { return t.contiguous().view({t.size(0), -1}); };
    backend.planes.combine({mat(gw[0]), mat(gw[1]), mat(gw[2])}, ComplexPair{},
                           weight_parts({gw_re, gw_im, weight.scale}));
  }
  if (need_b) gb_re = gb[0], gb_im = gb[1];
  return {grad_x, gw_re, gw_im, gb_re, gb_im};
}

namespace {

// The complex tensor re + i im of a gradient given as parts (undefined stays undefined).
at::Tensor complex_or_undefined(const at::Tensor& re, const at::Tensor& im) {
  return re.defined() ? at::complex(re, im) : at::Tensor();
}

}  // namespace

at::Tensor conv_complex_forward(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                const ConvParams& p, c10::string_view algorithm, const ConvBackend& backend) {
  const at::Tensor* b = present(bias);
  check_complex_params("cplxfast.conv_complex", x, weight, b);
  const c10::optional<at::Tensor> b_re = b ? c10::optional<at::Tensor>(at::real(*b)) : c10::nullopt;
  const c10::optional<at::Tensor> b_im = b ? c10::optional<at::Tensor>(at::imag(*b)) : c10::nullopt;
  return conv_forward(x, at::real(weight), at::imag(weight), b_re, b_im, c10::nullopt, p, algorithm, backend);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_complex_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, const ConvParams& p,
    c10::string_view algorithm, std::array<bool, 3> output_mask, const ConvBackend& backend) {
  const char* op = "cplxfast.conv_complex_backward";
  check_complex_params(op, x, weight, nullptr);
  check_complex(op, "grad", grad);
  check_same_dtype_device(op, "grad", grad, x);
  const auto [gx, gw_re, gw_im, gb_re, gb_im] =
      conv_backward(grad, x, at::real(weight), at::imag(weight), c10::nullopt, p, algorithm, output_mask, backend);
  return {gx, complex_or_undefined(gw_re, gw_im), complex_or_undefined(gb_re, gb_im)};
}

}  // namespace cplxfast
