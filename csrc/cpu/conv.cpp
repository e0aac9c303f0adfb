// Complex convolution on CPU: the grouped 3M/4M driver (common/conv.cpp) with the CPU plane
// kernels and oneDNN's real convolution, and a fused direct kernel for depthwise convolution.
//
// Depthwise (groups == channels, 1d/2d, contiguous): each (batch, channel) plane is one task.
// An output row is accumulated in two real row buffers (re, im) over the kernel taps, each tap
// a complex multiply-accumulate of a shifted input row, then written interleaved: the input is
// read from cache once per tap, written once, and nothing else touches memory. The backward
// pass scatters g conj(W) into the input gradient tap by tap, and accumulates g conj(x) per
// tap in row buffers that are summed once per plane (no float reductions in the inner loops,
// so they vectorise).
#include <algorithm>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/conv.h"
#include "cpu/planes.h"
#include "cpu/vectorize.h"

namespace cplxfast::cpu {
namespace {

// ---- Row kernels. Complex rows are interleaved (re, im); s is the input column stride in
// complex elements (kStride > 0: known at compile time).

// acc[j] += x[j s] w
template <typename T, int kStride>
inline void mac_row(const T* __restrict__ x, int64_t s_rt, T wr, T wi, int64_t n, T* __restrict__ acc_re,
                    T* __restrict__ acc_im) {
  const int64_t s = kStride > 0 ? kStride : s_rt;
  for (int64_t j = 0; j < n; ++j) {
    const T xr = x[2 * j * s], xi = x[2 * j * s + 1];
    acc_re[j] += xr * wr - xi * wi;
    acc_im[j] += xr * wi + xi * wr;
  }
}

// gx[j s] += g[j] conj(w)
template <typename T, int kStride>
inline void scatter_row(const T* __restrict__ g, int64_t s_rt, T wr, T wi, int64_t n, T* __restrict__ gx) {
  const int64_t s = kStride > 0 ? kStride : s_rt;
  for (int64_t j = 0; j < n; ++j) {
    const T gr = g[2 * j], gi = g[2 * j + 1];
    gx[2 * j * s] += gr * wr + gi * wi;
    gx[2 * j * s + 1] += gi * wr - gr * wi;
  }
}

// acc[j] += g[j] conj(x[j s])
template <typename T, int kStride>
inline void corr_row(const T* __restrict__ g, const T* __restrict__ x, int64_t s_rt, int64_t n, T* __restrict__ acc_re,
                     T* __restrict__ acc_im) {
  const int64_t s = kStride > 0 ? kStride : s_rt;
  for (int64_t j = 0; j < n; ++j) {
    const T gr = g[2 * j], gi = g[2 * j + 1], xr = x[2 * j * s], xi = x[2 * j * s + 1];
    acc_re[j] += gr * xr + gi * xi;
    acc_im[j] += gi * xr - gr * xi;
  }
}

// Entry points compiled for AVX2 and the baseline (target_clones needs plain functions).
#define CPLXFAST_DEPTHWISE_ROWS(T, SUFFIX)                                                                       \
  CPLXFAST_VECTOR_CLONES void mac_##SUFFIX(const T* x, int64_t s, T wr, T wi, int64_t n, T* ar, T* ai) {         \
    s == 1 ? mac_row<T, 1>(x, 1, wr, wi, n, ar, ai) : mac_row<T, 0>(x, s, wr, wi, n, ar, ai);                   \
  }                                                                                                              \
  CPLXFAST_VECTOR_CLONES void scatter_##SUFFIX(const T* g, int64_t s, T wr, T wi, int64_t n, T* gx) {           \
    s == 1 ? scatter_row<T, 1>(g, 1, wr, wi, n, gx) : scatter_row<T, 0>(g, s, wr, wi, n, gx);                   \
  }                                                                                                              \
  CPLXFAST_VECTOR_CLONES void corr_##SUFFIX(const T* g, const T* x, int64_t s, int64_t n, T* ar, T* ai) {       \
    s == 1 ? corr_row<T, 1>(g, x, 1, n, ar, ai) : corr_row<T, 0>(g, x, s, n, ar, ai);                           \
  }
CPLXFAST_DEPTHWISE_ROWS(float, f32)
CPLXFAST_DEPTHWISE_ROWS(double, f64)
#undef CPLXFAST_DEPTHWISE_ROWS

template <typename T>
struct Rows;
template <>
struct Rows<float> {
  static constexpr auto mac = &mac_f32;
  static constexpr auto scatter = &scatter_f32;
  static constexpr auto corr = &corr_f32;
};
template <>
struct Rows<double> {
  static constexpr auto mac = &mac_f64;
  static constexpr auto scatter = &scatter_f64;
  static constexpr auto corr = &corr_f64;
};

// Depthwise geometry, and the output columns each tap reaches.
struct Depthwise : DepthwiseGeometry {
  Depthwise(const at::Tensor& x, const at::Tensor& w, const ConvParams& p)
      : DepthwiseGeometry(depthwise_geometry(x, w, p)) {}

  // Output columns [lo, hi) whose input column ow * sw + off lies inside the row.
  void columns(int64_t off, int64_t& lo, int64_t& hi) const {
    lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
    hi = W - 1 - off < 0 ? 0 : std::min(OW, (W - 1 - off) / sw + 1);
    lo = std::min(lo, hi);
  }
};

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
    std::vector<T> acc(2 * d.OW);
    T *acc_re = acc.data(), *acc_im = acc.data() + d.OW;
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t c = plane % d.C;
      const T* xp = X + 2 * plane * d.H * d.W;
      T* yp = Y + 2 * plane * d.OH * d.OW;
      for (int64_t oh = 0; oh < d.OH; ++oh) {
        std::fill(acc_re, acc_re + d.OW, Br ? Br[c] : T(0));
        std::fill(acc_im, acc_im + d.OW, Bi ? Bi[c] : T(0));
        for (int64_t kh = 0; kh < d.KH; ++kh) {
          const int64_t ih = oh * d.sh - d.ph + kh * d.dh;
          if (ih < 0 || ih >= d.H) continue;
          for (int64_t kw = 0; kw < d.KW; ++kw) {
            const int64_t off = kw * d.dw - d.pw, k = (c * d.KH + kh) * d.KW + kw;
            int64_t lo, hi;
            d.columns(off, lo, hi);
            Rows<T>::mac(xp + 2 * (ih * d.W + lo * d.sw + off), d.sw, Wr[k], Wi[k], hi - lo, acc_re + lo, acc_im + lo);
          }
        }
        T* yr = yp + 2 * oh * d.OW;
        for (int64_t j = 0; j < d.OW; ++j) {
          yr[2 * j] = acc_re[j];
          yr[2 * j + 1] = acc_im[j];
        }
      }
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
    // Per tap k: row accumulators of g conj(x) (re, im), then the bias row (re, im).
    std::vector<T> acc((PW || PB) ? 2 * (K + 1) * d.OW : 0);
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t c = plane % d.C;
      const T* xp = X + 2 * plane * d.H * d.W;
      const T* gp = G + 2 * plane * d.OH * d.OW;
      T* gxp = GX ? GX + 2 * plane * d.H * d.W : nullptr;
      if (gxp) std::fill(gxp, gxp + 2 * d.H * d.W, T(0));
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t oh = 0; oh < d.OH; ++oh) {
        const T* grow = gp + 2 * oh * d.OW;
        if (PB) {
          T *br = acc.data() + 2 * K * d.OW, *bi = br + d.OW;
          for (int64_t j = 0; j < d.OW; ++j) br[j] += grow[2 * j], bi[j] += grow[2 * j + 1];
        }
        for (int64_t kh = 0; kh < d.KH; ++kh) {
          const int64_t ih = oh * d.sh - d.ph + kh * d.dh;
          if (ih < 0 || ih >= d.H) continue;
          for (int64_t kw = 0; kw < d.KW; ++kw) {
            const int64_t off = kw * d.dw - d.pw, t = kh * d.KW + kw, k = c * K + t;
            int64_t lo, hi;
            d.columns(off, lo, hi);
            const int64_t in_at = 2 * (ih * d.W + lo * d.sw + off);
            if (gxp) Rows<T>::scatter(grow + 2 * lo, d.sw, Wr[k], Wi[k], hi - lo, gxp + in_at);
            if (PW) {
              T* ar = acc.data() + 2 * t * d.OW;
              Rows<T>::corr(grow + 2 * lo, xp + in_at, d.sw, hi - lo, ar + lo, ar + d.OW + lo);
            }
          }
        }
      }
      const auto row_sum = [&](int64_t slot, T* out) {
        const T* ar = acc.data() + 2 * slot * d.OW;
        T sr = 0, si = 0;
        for (int64_t j = 0; j < d.OW; ++j) sr += ar[j], si += ar[d.OW + j];
        out[0] = sr, out[1] = si;
      };
      if (PW) {
        for (int64_t t = 0; t < K; ++t) row_sum(t, PW + 2 * (plane * K + t));
      }
      if (PB) row_sum(K, PB + 2 * plane);
    }
  });
}

at::Tensor depthwise(const at::Tensor& x_in, const at::Tensor& weight_re, const at::Tensor& weight_im,
                     const at::Tensor& bias_re, const at::Tensor& bias_im, const ConvParams& p) {
  const at::Tensor x = x_in.resolve_conj().contiguous();
  const Depthwise d(x, weight_re, p);
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
  const at::Tensor x = x_in.resolve_conj().contiguous();
  const at::Tensor g = grad.resolve_conj().contiguous();
  const Depthwise d(x, weight_re, p);
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

const ConvBackend& backend() {
  static const ConvBackend b{plane_kernels(), &depthwise, &depthwise_backward};
  return b;
}

at::Tensor conv(const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im,
                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                at::IntArrayRef output_padding, int64_t groups, c10::string_view algorithm) {
  return conv_forward(x, weight_re, weight_im, bias_re, bias_im,
                      conv_params(stride, padding, dilation, transposed, output_padding, groups), algorithm, backend());
}

ConvGrads conv_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                        const at::Tensor& weight_im, at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding, int64_t groups,
                        c10::string_view algorithm, std::array<bool, 3> output_mask) {
  return cplxfast::conv_backward(grad, x, weight_re, weight_im,
                                 conv_params(stride, padding, dilation, transposed, output_padding, groups), algorithm,
                                 output_mask, backend());
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CPU, m) {
  m.impl("conv", &conv);
  m.impl("conv_backward", &conv_backward);
}

}  // namespace cplxfast::cpu
