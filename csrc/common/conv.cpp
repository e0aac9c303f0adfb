// Device-agnostic driver of complex (transposed) convolution; see conv.h.
#include "common/conv.h"

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>

#include "common/checks.h"

namespace cplxfast {
namespace {

enum class ConvAlgorithm { k3M, k4M, kDepthwise };

ConvAlgorithm resolve_algorithm(const char* op, c10::string_view name, bool depthwise_ok) {
  if (name == "3m") return ConvAlgorithm::k3M;
  if (name == "4m") return depthwise_ok ? ConvAlgorithm::kDepthwise : ConvAlgorithm::k4M;
  if (name == "auto") return depthwise_ok ? ConvAlgorithm::kDepthwise : ConvAlgorithm::k3M;
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

const at::Tensor* present(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? &*t : nullptr;
}

std::vector<int64_t> output_shape(const char* op, const at::Tensor& x, const at::Tensor& w, const ConvParams& p) {
  std::vector<int64_t> shape{x.size(0), p.transposed ? w.size(1) * p.groups : w.size(0)};
  for (int64_t s : conv_output_sizes(op, x, w, p)) shape.push_back(s);
  return shape;
}

// ---- The group-ordered layout of activations and their planes.
//
// An activation [B, C, *S] is dense in format fmt: contiguous (memory order [B, C, *S]) or
// channels_last ([B, *S, C]). Read in memory order, it is a [rows, cols] matrix whose rows are
// (batch, group) or (batch, pixel, group) and whose cols are the group's channels (and pixels):
// rows = B * g, cols = C / g * |S| (contiguous) or rows = B * |S| * g, cols = C / g. P planes are
// stored as [rows, P, cols]: the channel order (group, plane, channel) of a real convolution
// with P * g groups, in the same format.
struct GroupLayout {
  at::MemoryFormat fmt;
  int64_t groups;

  bool channels_last() const { return fmt != at::MemoryFormat::Contiguous; }

  int64_t cols(at::IntArrayRef sizes) const {
    const int64_t per_group = sizes[1] / groups;
    return channels_last() ? per_group : per_group * c10::multiply_integers(sizes.begin() + 2, sizes.end());
  }

  // [B, C, *S] -> memory order ([B, *S, C] for channels_last), a permuted view.
  at::Tensor memory_order(const at::Tensor& t) const {
    if (!channels_last()) return t;
    std::vector<int64_t> perm{0};
    for (int64_t d = 2; d < t.dim(); ++d) perm.push_back(d);
    perm.push_back(1);
    return t.permute(perm);
  }

  // The [rows, cols] (re, im) views of a complex activation dense in fmt (no copy).
  ComplexPair parts(const at::Tensor& z) const {
    const int64_t c = cols(z.sizes());
    const at::Tensor m = memory_order(z).view({z.numel() / c, c});
    return {at::real(m), at::imag(m)};
  }

  // A real buffer for P planes of an activation with sizes [B, C, *S]: [rows, P, cols].
  at::Tensor planes_buffer(at::IntArrayRef sizes, int64_t P, const at::TensorOptions& real_opts) const {
    const int64_t c = cols(sizes);
    return at::empty({c10::multiply_integers(sizes) / c, P, c}, real_opts);
  }

  // The buffer as the real convolution operand [B, P * C, *S], in fmt.
  at::Tensor as_operand(const at::Tensor& buf, at::IntArrayRef sizes, int64_t P) const {
    std::vector<int64_t> mem{sizes[0]};
    if (channels_last()) {
      mem.insert(mem.end(), sizes.begin() + 2, sizes.end());
      mem.push_back(P * sizes[1]);
      std::vector<int64_t> perm{0, static_cast<int64_t>(sizes.size()) - 1};
      for (int64_t d = 1; d < static_cast<int64_t>(sizes.size()) - 1; ++d) perm.push_back(d);
      return buf.view(mem).permute(perm);
    }
    mem.push_back(P * sizes[1]);
    mem.insert(mem.end(), sizes.begin() + 2, sizes.end());
    return buf.view(mem);
  }

  // A real convolution result [B, P * C, *S] as its planes [P, rows, cols] (a copy only if the
  // backend returned another format).
  at::Tensor planes_of(const at::Tensor& y, int64_t P) const {
    const at::Tensor dense = y.contiguous(fmt);
    std::vector<int64_t> sizes = y.sizes().vec();
    sizes[1] /= P;
    const int64_t c = cols(sizes);
    return memory_order(dense).reshape({y.numel() / (P * c), P, c}).transpose(0, 1);
  }
};

at::MemoryFormat activation_format(const at::Tensor& x) {
  return x.dim() >= 4 ? x.suggest_memory_format() : at::MemoryFormat::Contiguous;
}

at::TensorOptions real_options(const at::Tensor& x) {
  return x.options().dtype(c10::toRealValueType(x.scalar_type())).memory_format(at::MemoryFormat::Contiguous);
}

// The [groups, rest] (re, im) views of a weight [A, B, *k] in group order.
ComplexPair weight_parts(const at::Tensor& re, const at::Tensor& im, int64_t groups) {
  return {re.reshape({groups, -1}), im.reshape({groups, -1})};
}

// The 3M weight planes of W (or conj W) as a real weight [3 A, B, *k] for 3 x groups groups.
at::Tensor weight_planes(const PlaneKernels& k, const at::Tensor& re, const at::Tensor& im, int64_t groups, bool conj) {
  at::Tensor buf = at::empty({groups, 3, re.numel() / groups}, real_options(re).dtype(re.scalar_type()));
  k.split(weight_parts(re, im, groups), conj, buf.transpose(0, 1));
  std::vector<int64_t> sizes = re.sizes().vec();
  sizes[0] *= 3;
  return buf.view(sizes);
}

// The 4M real block weight of W: per group, [[Wr, -s Wi], [s Wi, Wr]] over (rows of W's dim 0,
// rows of W's dim 1) with s = +1 for a convolution ([out][in]) and -1 for a transposed one
// ([in][out]): a real weight [2 A, 2 B, *k] for `groups` groups.
at::Tensor block_weight(const at::Tensor& re, const at::Tensor& im, int64_t groups, bool transposed) {
  std::vector<int64_t> g_sizes{groups, re.size(0) / groups, re.size(1), -1};
  const at::Tensor wr = re.reshape(g_sizes), wi = im.reshape(g_sizes);
  const at::Tensor swi = transposed ? -wi : wi;
  const at::Tensor blk = at::stack({at::stack({wr, -swi}, 2), at::stack({swi, wr}, 2)}, 1);
  std::vector<int64_t> sizes = re.sizes().vec();
  sizes[0] *= 2;
  sizes[1] *= 2;
  return blk.reshape(sizes);
}

// (grad Wr, grad Wi) from the gradient of the block weight.
std::pair<at::Tensor, at::Tensor> block_weight_grad(const at::Tensor& gblk, const at::Tensor& re, int64_t groups,
                                                    bool transposed) {
  const at::Tensor G = gblk.reshape({groups, 2, re.size(0) / groups, 2, re.size(1), -1});
  const auto part = [&](int64_t a, int64_t b) { return G.select(3, b).select(1, a); };
  at::Tensor g_re = (part(0, 0) + part(1, 1)).reshape(re.sizes());
  at::Tensor g_im = part(1, 0) - part(0, 1);
  if (transposed) g_im = g_im.neg();
  return {g_re, g_im.reshape(re.sizes())};
}

// The backend convolution's bias in plane channel order: 3M (Re b, 0, Re b + Im b), whose
// recombination is b; 4M (Re b, Im b).
at::Tensor plane_bias(const at::Tensor& b_re, const at::Tensor& b_im, int64_t groups, bool gauss) {
  const at::Tensor br = b_re.reshape({groups, -1}), bi = b_im.reshape({groups, -1});
  const at::Tensor planes = gauss ? at::stack({br, at::zeros_like(br), br + bi}, 1) : at::stack({br, bi}, 1);
  return planes.reshape({-1});
}

// (re, im) of the complex bias gradient from the backend's plane bias gradient.
std::pair<at::Tensor, at::Tensor> bias_grad_of(const at::Tensor& gb, int64_t groups, int64_t P) {
  const at::Tensor g = gb.view({groups, P, -1});
  return {g.select(1, 0).reshape({-1}).clone(), g.select(1, 1).reshape({-1}).clone()};
}

std::vector<int64_t> batch_and_spatial_dims(const at::Tensor& t) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < t.dim(); ++d) dims.push_back(d);
  return dims;
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

}  // namespace

ConvParams conv_params(at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                       at::IntArrayRef output_padding, int64_t groups) {
  return {stride.vec(), padding.vec(), dilation.vec(), output_padding.vec(), transposed, groups};
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

at::Tensor conv_forward(
    const at::Tensor& x_in, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im, const ConvParams& p,
    c10::string_view algorithm, const ConvBackend& backend) {
  const char* op = "cplxfast.conv";
  const at::Tensor* b_re = present(bias_re);
  const at::Tensor* b_im = present(bias_im);
  check_conv_args(op, x_in, weight_re, weight_im, b_re, b_im, p);
  const std::vector<int64_t> out_shape = output_shape(op, x_in, weight_re, p);
  const GroupLayout layout{activation_format(x_in), p.groups};
  const auto algo = resolve_algorithm(op, algorithm, backend.depthwise != nullptr && is_fused_depthwise(x_in, weight_re, p));
  at::Tensor y = at::empty(out_shape, x_in.options().memory_format(layout.fmt));
  if (y.numel() == 0) return y;
  if (x_in.numel() == 0) return zero_input_result(y, b_re, b_im);
  if (algo == ConvAlgorithm::kDepthwise) {
    return backend.depthwise(x_in, weight_re, weight_im, b_re ? *b_re : at::Tensor(), b_im ? *b_im : at::Tensor(), p);
  }

  const bool gauss = algo == ConvAlgorithm::k3M;
  const int64_t P = gauss ? 3 : 2;
  const at::Tensor x = x_in.contiguous(layout.fmt);
  at::Tensor x_buf = layout.planes_buffer(x.sizes(), P, real_options(x));
  backend.planes.split(layout.parts(x), /*conj=*/false, x_buf.transpose(0, 1));
  const at::Tensor w = gauss ? weight_planes(backend.planes, weight_re, weight_im, p.groups, /*conj=*/false)
                             : block_weight(weight_re, weight_im, p.groups, p.transposed);
  const at::Tensor bias = b_re ? plane_bias(*b_re, *b_im, p.groups, gauss) : at::Tensor();
  const at::Tensor products = at::convolution(
      layout.as_operand(x_buf, x.sizes(), P), w, bias, p.stride, p.padding, p.dilation, p.transposed,
      p.output_padding, gauss ? 3 * p.groups : p.groups);
  backend.planes.combine(layout.planes_of(products, P), ComplexPair{}, layout.parts(y));
  return y;
}

ConvGrads conv_backward(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const ConvParams& p, c10::string_view algorithm, std::array<bool, 3> output_mask, const ConvBackend& backend) {
  const char* op = "cplxfast.conv_backward";
  check_conv_args(op, x_in, weight_re, weight_im, nullptr, nullptr, p);
  check_complex(op, "grad", grad_in);
  check_same_dtype_device(op, "grad", grad_in, x_in);
  const std::vector<int64_t> out_shape = output_shape(op, x_in, weight_re, p);
  TORCH_CHECK(grad_in.sizes().vec() == out_shape, op, ": grad has shape ", grad_in.sizes(),
              " but the output of the convolution has shape ", at::IntArrayRef(out_shape));
  const bool need_x = output_mask[0], need_w = output_mask[1], need_b = output_mask[2];
  const GroupLayout layout{activation_format(x_in), p.groups};
  const int64_t C_out = out_shape[1];
  const auto ropts = real_options(x_in);

  at::Tensor grad_x, gw_re, gw_im, gb_re, gb_im;
  if (grad_in.numel() == 0 || x_in.numel() == 0) {  // nothing flows: zero gradients
    if (need_x) grad_x = at::zeros_like(x_in, x_in.options().memory_format(layout.fmt));
    if (need_w) gw_re = at::zeros(weight_re.sizes(), ropts), gw_im = at::zeros(weight_re.sizes(), ropts);
    if (need_b) {
      const at::Tensor gb = at::sum(grad_in, batch_and_spatial_dims(grad_in));
      gb_re = at::real(gb).contiguous(), gb_im = at::imag(gb).contiguous();
    }
    return {grad_x, gw_re, gw_im, gb_re, gb_im};
  }
  const auto algo = resolve_algorithm(op, algorithm, backend.depthwise_backward != nullptr && is_fused_depthwise(x_in, weight_re, p));
  if (algo == ConvAlgorithm::kDepthwise) return backend.depthwise_backward(grad_in, x_in, weight_re, weight_im, p, output_mask);
  if (!need_x && !need_w && !need_b) return {grad_x, gw_re, gw_im, gb_re, gb_im};

  const bool gauss = algo == ConvAlgorithm::k3M;
  const int64_t P = gauss ? 3 : 2;
  const at::Tensor g = grad_in.contiguous(layout.fmt);
  at::Tensor g_buf = layout.planes_buffer(g.sizes(), P, ropts);
  backend.planes.split(layout.parts(g), /*conj=*/false, g_buf.transpose(0, 1));
  // 3M: the planes of conj(x) and conj(W). 4M: x's planes and the block weight (the real
  // block form's transpose already conjugates). An operand whose gradient partner is not
  // wanted is only a shape to the backend: left unwritten.
  const at::Tensor x = x_in.contiguous(layout.fmt);
  at::Tensor x_buf = layout.planes_buffer(x.sizes(), P, ropts);
  if (need_w) backend.planes.split(layout.parts(x), /*conj=*/gauss, x_buf.transpose(0, 1));
  at::Tensor w;
  if (!gauss) {
    w = block_weight(weight_re, weight_im, p.groups, p.transposed);
  } else if (need_x) {
    w = weight_planes(backend.planes, weight_re, weight_im, p.groups, /*conj=*/true);
  } else {
    std::vector<int64_t> sizes = weight_re.sizes().vec();
    sizes[0] *= 3;
    w = at::empty(sizes, ropts);
  }
  const std::vector<int64_t> bias_sizes{P * C_out};
  const auto [gi, gw, gb] = at::convolution_backward(
      layout.as_operand(g_buf, g.sizes(), P), layout.as_operand(x_buf, x.sizes(), P), w,
      need_b ? c10::OptionalIntArrayRef(bias_sizes) : c10::nullopt, p.stride, p.padding, p.dilation, p.transposed,
      p.output_padding, gauss ? 3 * p.groups : p.groups, {need_x, need_w, need_b});

  if (need_x) {
    grad_x = at::empty(x.sizes(), x.options().memory_format(layout.fmt));
    backend.planes.combine(layout.planes_of(gi, P), ComplexPair{}, layout.parts(grad_x));
  }
  if (need_w) {
    if (gauss) {
      gw_re = at::empty(weight_re.sizes(), ropts);
      gw_im = at::empty(weight_re.sizes(), ropts);
      backend.planes.combine(gw.reshape({p.groups, 3, -1}).transpose(0, 1), ComplexPair{},
                             weight_parts(gw_re, gw_im, p.groups));
    } else {
      std::tie(gw_re, gw_im) = block_weight_grad(gw, weight_re, p.groups, p.transposed);
    }
  }
  if (need_b) std::tie(gb_re, gb_im) = bias_grad_of(gb, p.groups, P);
  return {grad_x, gw_re, gw_im, gb_re, gb_im};
}

}  // namespace cplxfast
