// Complex convolution on CPU: the 3M/4M driver (common/conv.cpp) with the CPU plane kernels and
// oneDNN's real convolution, and a fused direct kernel for depthwise convolution.
//
// Depthwise (groups == channels, 1d/2d, contiguous): each (batch, channel) plane is one task.
// The interleaved input plane is read once into planar (re, im) rows with the horizontal zero
// padding built in (a cache-resident buffer); every output row is then accumulated over the
// kernel taps in two planar row buffers, each tap a complex multiply-accumulate of a shifted
// input row with contiguous loads and no bounds checks, and written out interleaved once. The
// backward pass reads g and x the same way: it scatters g conj(W) into a planar, padded input
// gradient (written out once per plane), and sums g conj(x) per tap and row (the row's dot
// product, in float lanes), in double per plane.
#include <algorithm>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/conv.h"
#include "cpu/planes.h"
#include "cpu/reparam.h"
#include "cpu/vectorize.h"

namespace cplxfast::cpu {
namespace {

// ---- Row kernels on planar rows; s is the input column stride (kStride > 0: known at compile
// time, for the strides 1 and 2 of nearly every layer: with a runtime stride of 2 the weight
// gradient's dot product ran 5x slower, bench/RESULTS.md 2026-12-07).

// acc[j] += x[j s] w
template <typename T, int kStride>
inline void mac_row(const T* __restrict__ xr, const T* __restrict__ xi, int64_t s_rt, T wr, T wi, int64_t n,
                    T* __restrict__ acc_re, T* __restrict__ acc_im) {
  const int64_t s = kStride > 0 ? kStride : s_rt;
  for (int64_t j = 0; j < n; ++j) {
    acc_re[j] += xr[j * s] * wr - xi[j * s] * wi;
    acc_im[j] += xr[j * s] * wi + xi[j * s] * wr;
  }
}

// gx[j s] += g[j] conj(w)
template <typename T, int kStride>
inline void scatter_row(const T* __restrict__ gr, const T* __restrict__ gi, int64_t s_rt, T wr, T wi, int64_t n,
                        T* __restrict__ gx_re, T* __restrict__ gx_im) {
  const int64_t s = kStride > 0 ? kStride : s_rt;
  for (int64_t j = 0; j < n; ++j) {
    gx_re[j * s] += gr[j] * wr + gi[j] * wi;
    gx_im[j * s] += gi[j] * wr - gr[j] * wi;
  }
}

// sums += (Re, Im) of sum_j g[j] conj(x[j s]), in 16 float lanes per part, then double: the
// weight gradient's dot products of one row, per kernel tap.
template <typename T, int kStride>
__attribute__((always_inline)) inline void corr_sum_row(const T* __restrict__ gr, const T* __restrict__ gi,
                                                        const T* __restrict__ xr, const T* __restrict__ xi,
                                                        int64_t s_rt, int64_t n, double* __restrict__ sums) {
  const int64_t s = kStride > 0 ? kStride : s_rt;
  T lanes_re[2][8] = {}, lanes_im[2][8] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    for (int a = 0; a < 2; ++a) {
      for (int l = 0; l < 8; ++l) {
        const int64_t k = j + 8 * a + l;
        lanes_re[a][l] += gr[k] * xr[k * s] + gi[k] * xi[k * s];
        lanes_im[a][l] += gi[k] * xr[k * s] - gr[k] * xi[k * s];
      }
    }
  }
  double sr = 0, si = 0;
  for (; j < n; ++j) {
    sr += gr[j] * xr[j * s] + gi[j] * xi[j * s];
    si += gi[j] * xr[j * s] - gr[j] * xi[j * s];
  }
  for (int a = 0; a < 2; ++a) {
    for (int l = 0; l < 8; ++l) sr += lanes_re[a][l], si += lanes_im[a][l];
  }
  sums[0] += sr;
  sums[1] += si;
}

// Entry points compiled per vector ISA (CPLXFAST_VECTOR_CLONES; target_clones needs plain functions).
#define CPLXFAST_DEPTHWISE_ROWS(T, SUFFIX)                                                                        \
  CPLXFAST_VECTOR_CLONES void mac_##SUFFIX(const T* xr, const T* xi, int64_t s, T wr, T wi, int64_t n, T* ar,     \
                                           T* ai) {                                                               \
    if (s == 1) return mac_row<T, 1>(xr, xi, 1, wr, wi, n, ar, ai);                                              \
    if (s == 2) return mac_row<T, 2>(xr, xi, 2, wr, wi, n, ar, ai);                                              \
    mac_row<T, 0>(xr, xi, s, wr, wi, n, ar, ai);                                                                  \
  }                                                                                                               \
  CPLXFAST_VECTOR_CLONES void scatter_##SUFFIX(const T* gr, const T* gi, int64_t s, T wr, T wi, int64_t n, T* xr, \
                                               T* xi) {                                                           \
    if (s == 1) return scatter_row<T, 1>(gr, gi, 1, wr, wi, n, xr, xi);                                          \
    if (s == 2) return scatter_row<T, 2>(gr, gi, 2, wr, wi, n, xr, xi);                                          \
    scatter_row<T, 0>(gr, gi, s, wr, wi, n, xr, xi);                                                              \
  }                                                                                                               \
  CPLXFAST_VECTOR_CLONES void corr_sum_##SUFFIX(const T* gr, const T* gi, const T* xr, const T* xi, int64_t s,    \
                                                int64_t n, double* sums) {                                        \
    if (s == 1) return corr_sum_row<T, 1>(gr, gi, xr, xi, 1, n, sums);                                           \
    if (s == 2) return corr_sum_row<T, 2>(gr, gi, xr, xi, 2, n, sums);                                           \
    corr_sum_row<T, 0>(gr, gi, xr, xi, s, n, sums);                                                               \
  }                                                                                                               \
  CPLXFAST_VECTOR_CLONES double sum_##SUFFIX(const T* v, int64_t n) { return lane_sum(v, n); }
CPLXFAST_DEPTHWISE_ROWS(float, f32)
CPLXFAST_DEPTHWISE_ROWS(double, f64)
#undef CPLXFAST_DEPTHWISE_ROWS

template <typename T>
struct Rows;
template <>
struct Rows<float> {
  static constexpr auto mac = &mac_f32;
  static constexpr auto scatter = &scatter_f32;
  static constexpr auto corr_sum = &corr_sum_f32;
  static constexpr auto sum = &sum_f32;
};
template <>
struct Rows<double> {
  static constexpr auto mac = &mac_f64;
  static constexpr auto scatter = &scatter_f64;
  static constexpr auto corr_sum = &corr_sum_f64;
  static constexpr auto sum = &sum_f64;
};

// A planar copy of one complex plane [rows, cols]: re and im rows of `pitch` elements with
// `pad` zero columns on each side (thread-local scratch, reused across planes).
template <typename T>
struct PlanarPlane {
  int64_t rows, cols, pad, pitch;
  std::vector<T> buf;

  PlanarPlane(int64_t rows_, int64_t cols_, int64_t pad_)
      : rows(rows_), cols(cols_), pad(pad_), pitch(cols_ + 2 * pad_), buf(2 * rows_ * pitch, T(0)) {}

  // Row r of the padded plane: column c of the data is at [pad + c].
  T* re(int64_t r) { return buf.data() + r * pitch; }
  T* im(int64_t r) { return buf.data() + (rows + r) * pitch; }

  // Read an interleaved plane in (the padding stays zero).
  void load(const T* z) {
    for (int64_t r = 0; r < rows; ++r) deinterleave(z + 2 * r * cols, cols, re(r) + pad, im(r) + pad);
  }

  void zero() { std::fill(buf.begin(), buf.end(), T(0)); }

  // Write the data columns out interleaved.
  void store(T* z) {
    for (int64_t r = 0; r < rows; ++r) interleave(re(r) + pad, im(r) + pad, cols, z + 2 * r * cols);
  }
};

using Depthwise = DepthwiseGeometry;

// Real parts of the (small) weight and bias, contiguous and with neg bits resolved.
at::Tensor plain(const at::Tensor& t) { return t.resolve_neg().contiguous(); }

template <typename T>
void depthwise_forward_impl(const at::Tensor& x, const at::Tensor& w_re, const at::Tensor& w_im, const at::Tensor& b_re,
                            const at::Tensor& b_im, const Depthwise& d, at::Tensor& y) {
  const T* X = reinterpret_cast<const T*>(x.data_ptr());
  T* Y = reinterpret_cast<T*>(y.data_ptr());
  const T *Wr = w_re.data_ptr<T>(), *Wi = w_im.data_ptr<T>();
  const T* Br = b_re.defined() ? b_re.data_ptr<T>() : nullptr;
  const T* Bi = b_im.defined() ? b_im.data_ptr<T>() : nullptr;
  at::parallel_for(0, d.B * d.C, 1, [&](int64_t begin, int64_t end) {
    PlanarPlane<T> in(d.H, d.W, d.pw), out(d.OH, d.OW, 0);
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t c = plane % d.C;
      in.load(X + 2 * plane * d.H * d.W);
      for (int64_t oh = 0; oh < d.OH; ++oh) {
        T *acc_re = out.re(oh), *acc_im = out.im(oh);
        std::fill(acc_re, acc_re + d.OW, Br ? Br[c] : T(0));
        std::fill(acc_im, acc_im + d.OW, Bi ? Bi[c] : T(0));
        for (int64_t kh = 0; kh < d.KH; ++kh) {
          const int64_t ih = oh * d.sh - d.ph + kh * d.dh;
          if (ih < 0 || ih >= d.H) continue;
          for (int64_t kw = 0; kw < d.KW; ++kw) {
            const int64_t k = (c * d.KH + kh) * d.KW + kw;
            Rows<T>::mac(in.re(ih) + kw * d.dw, in.im(ih) + kw * d.dw, d.sw, Wr[k], Wi[k], d.OW, acc_re, acc_im);
          }
        }
      }
      out.store(Y + 2 * plane * d.OH * d.OW);
    }
  });
}

template <typename T>
void depthwise_backward_impl(const at::Tensor& g, const at::Tensor& x, const at::Tensor& w_re, const at::Tensor& w_im,
                             const Depthwise& d, at::Tensor* gx, at::Tensor* partial_w, at::Tensor* partial_b) {
  const T* G = reinterpret_cast<const T*>(g.data_ptr());
  const T* X = reinterpret_cast<const T*>(x.data_ptr());
  const T *Wr = w_re.data_ptr<T>(), *Wi = w_im.data_ptr<T>();
  T* GX = gx ? reinterpret_cast<T*>(gx->data_ptr()) : nullptr;
  T* PW = partial_w ? reinterpret_cast<T*>(partial_w->data_ptr()) : nullptr;  // [B C, K] complex
  T* PB = partial_b ? reinterpret_cast<T*>(partial_b->data_ptr()) : nullptr;  // [B C] complex
  const int64_t K = d.KH * d.KW;
  at::parallel_for(0, d.B * d.C, 1, [&](int64_t begin, int64_t end) {
    PlanarPlane<T> gp(d.OH, d.OW, 0), xp(PW ? d.H : 0, d.W, d.pw), gxp(GX ? d.H : 0, d.W, d.pw);
    // The plane's sums of g conj(x) per tap t (slots 0..K-1) and of g (slot K), (re, im) in double.
    std::vector<double> sums(2 * (K + 1));
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t c = plane % d.C;
      gp.load(G + 2 * plane * d.OH * d.OW);
      if (PW) xp.load(X + 2 * plane * d.H * d.W);
      if (GX) gxp.zero();
      std::fill(sums.begin(), sums.end(), 0.0);
      for (int64_t oh = 0; oh < d.OH; ++oh) {
        const T *gr = gp.re(oh), *gi = gp.im(oh);
        if (PB) sums[2 * K] += Rows<T>::sum(gr, d.OW), sums[2 * K + 1] += Rows<T>::sum(gi, d.OW);
        for (int64_t kh = 0; kh < d.KH; ++kh) {
          const int64_t ih = oh * d.sh - d.ph + kh * d.dh;
          if (ih < 0 || ih >= d.H) continue;
          for (int64_t kw = 0; kw < d.KW; ++kw) {
            const int64_t t = kh * d.KW + kw, k = c * K + t, off = kw * d.dw;
            if (GX) Rows<T>::scatter(gr, gi, d.sw, Wr[k], Wi[k], d.OW, gxp.re(ih) + off, gxp.im(ih) + off);
            if (PW) Rows<T>::corr_sum(gr, gi, xp.re(ih) + off, xp.im(ih) + off, d.sw, d.OW, &sums[2 * t]);
          }
        }
      }
      if (GX) gxp.store(GX + 2 * plane * d.H * d.W);
      if (PW) {
        for (int64_t i = 0; i < 2 * K; ++i) PW[2 * plane * K + i] = T(sums[i]);
      }
      if (PB) PB[2 * plane] = T(sums[2 * K]), PB[2 * plane + 1] = T(sums[2 * K + 1]);
    }
  });
}

at::Tensor depthwise(const at::Tensor& x_in, const at::Tensor& weight_re, const at::Tensor& weight_im,
                     const at::Tensor& bias_re, const at::Tensor& bias_im, const ConvParams& p) {
  const at::Tensor x = x_in.resolve_conj().resolve_neg().contiguous();
  const Depthwise d = depthwise_geometry(x, weight_re, p);
  std::vector<int64_t> shape{d.B, d.C};
  if (x.dim() == 4) shape.push_back(d.OH);
  shape.push_back(d.OW);
  at::Tensor y = at::empty(shape, x.options());
  const at::Tensor br = bias_re.defined() ? plain(bias_re) : at::Tensor();
  const at::Tensor bi = bias_im.defined() ? plain(bias_im) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(weight_re.scalar_type(), "cplxfast_depthwise_cpu", [&] {
    depthwise_forward_impl<scalar_t>(x, plain(weight_re), plain(weight_im), br, bi, d, y);
  });
  return y;
}

ConvGrads depthwise_backward(const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& weight_re,
                             const at::Tensor& weight_im, const ConvParams& p, std::array<bool, 3> mask) {
  const at::Tensor x = x_in.resolve_conj().resolve_neg().contiguous();
  const at::Tensor g = grad.resolve_conj().resolve_neg().contiguous();
  const Depthwise d = depthwise_geometry(x, weight_re, p);
  const int64_t K = d.KH * d.KW;
  at::Tensor gx = mask[0] ? at::empty(x.sizes(), x.options()) : at::Tensor();
  at::Tensor pw = mask[1] ? at::empty({d.B, d.C, K}, x.options()) : at::Tensor();
  at::Tensor pb = mask[2] ? at::empty({d.B, d.C}, x.options()) : at::Tensor();
  if (mask[0] || mask[1] || mask[2]) {
    AT_DISPATCH_FLOATING_TYPES(weight_re.scalar_type(), "cplxfast_depthwise_backward_cpu", [&] {
      depthwise_backward_impl<scalar_t>(g, x, plain(weight_re), plain(weight_im), d, mask[0] ? &gx : nullptr,
                                        mask[1] ? &pw : nullptr, mask[2] ? &pb : nullptr);
    });
  }
  at::Tensor gw_re, gw_im, gb_re, gb_im;
  if (mask[1]) {  // the per-plane partial sums, summed over the batch
    const at::Tensor gw = pw.sum(0);
    gw_re = at::real(gw).reshape(weight_re.sizes()).contiguous();
    gw_im = at::imag(gw).reshape(weight_re.sizes()).contiguous();
  }
  if (mask[2]) {
    const at::Tensor gb = pb.sum(0);
    gb_re = at::real(gb).contiguous();
    gb_im = at::imag(gb).contiguous();
  }
  return {gx, gw_re, gw_im, gb_re, gb_im};
}

// oneDNN's bf16/fp16 convolutions are fast only with the CPU's 16-bit units (AVX512-BF16 or
// AMX-BF16; AVX512-FP16); without them it emulates: a 16x128x32x32 3x3 bf16 conv took 3.3 s
// against 51 ms in float32 on the AVX2 development CPU.
bool native_16bit(at::ScalarType dtype) {
  __builtin_cpu_init();
  if (dtype == at::kBFloat16) return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
  return __builtin_cpu_supports("avx512fp16");
}

const ConvBackend& backend() {
  static const ConvBackend b{plane_kernels(), &depthwise, &depthwise_backward, &native_16bit,
                              /*small_pointwise_gemm=*/true};
  return b;
}

at::Tensor conv(const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im,
                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                at::IntArrayRef output_padding, int64_t groups, c10::string_view algorithm,
                std::optional<at::ScalarType> operand_dtype, const c10::optional<at::Tensor>& weight_mask) {
  return conv_forward(x, weight_re, weight_im, bias_re, bias_im, weight_mask,
                      conv_params(stride, padding, dilation, transposed, output_padding, groups, operand_dtype), algorithm, backend());
}

ConvGrads conv_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                        const at::Tensor& weight_im, at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding, int64_t groups,
                        c10::string_view algorithm, std::array<bool, 3> output_mask,
                        std::optional<at::ScalarType> operand_dtype, const c10::optional<at::Tensor>& weight_mask) {
  return cplxfast::conv_backward(grad, x, weight_re, weight_im, weight_mask,
                                 conv_params(stride, padding, dilation, transposed, output_padding, groups, operand_dtype), algorithm,
                                 output_mask, backend());
}

at::Tensor conv_complex(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                        at::IntArrayRef output_padding, int64_t groups, c10::string_view algorithm,
                std::optional<at::ScalarType> operand_dtype) {
  return conv_complex_forward(x, weight, bias, conv_params(stride, padding, dilation, transposed, output_padding, groups, operand_dtype),
                              algorithm, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_complex_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding, int64_t groups,
    c10::string_view algorithm, std::array<bool, 3> output_mask, std::optional<at::ScalarType> operand_dtype) {
  return cplxfast::conv_complex_backward(grad, x, weight,
                                         conv_params(stride, padding, dilation, transposed, output_padding, groups, operand_dtype),
                                         algorithm, output_mask, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_gaussian(
    const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im, const at::Tensor& log_sigma2,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    c10::string_view algorithm) {
  const std::vector<int64_t> no_output_padding(stride.size(), 0);
  return conv_gaussian_forward(x, weight_re, weight_im, bias_re, bias_im, log_sigma2,
                               conv_params(stride, padding, dilation, false, no_output_padding, groups, std::nullopt),
                               algorithm, backend(), noise_kernels());
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CPU, m) {
  m.impl("conv", &conv);
  m.impl("conv_backward", &conv_backward);
  m.impl("conv_complex", &conv_complex);
  m.impl("conv_complex_backward", &conv_complex_backward);
  m.impl("conv_gaussian", &conv_gaussian);
}

}  // namespace cplxfast::cpu
