// Device-agnostic driver of the fused 3M complex GEMM; see gemm3m.h.
#include "common/gemm3m.h"

#include <algorithm>
#include <optional>

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>

#include "common/checks.h"
#include "common/layout.h"
#include "common/precision.h"
#include "common/reparam.h"
#include "common/workspace.h"

namespace cplxfast {
namespace {

// kBlock: the mixed-precision 4M, the real block form (gemm3m.h).
enum class Algorithm { k3M, k4M, kBlock };

Algorithm resolve_algorithm(
    const char* op, c10::string_view name, int64_t M, int64_t N, int64_t K,
    at::ScalarType dtype, bool mixed, const Gemm3mBackend& backend) {
  Algorithm algo;
  if (name == "3m") {
    algo = Algorithm::k3M;
  } else if (name == "4m") {
    algo = Algorithm::k4M;
  } else if (name == "auto") {
    // Mixed precision: always the block form (gemm3m.h; measured in SEMANTICS.md).
    algo = !mixed && backend.prefer_3m(M, N, K, dtype) ? Algorithm::k3M : Algorithm::k4M;
  } else {
    TORCH_CHECK(false, op, ": algorithm must be \"auto\", \"3m\" or \"4m\", got \"", name, "\"");
  }
  // An empty product has nothing to gain from 3M; ATen's complex GEMM handles every empty case.
  if (M == 0 || N == 0 || K == 0) return Algorithm::k4M;
  return mixed && algo == Algorithm::k4M ? Algorithm::kBlock : algo;
}

void check_linear_args(
    const char* op, const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const at::Tensor* bias_re, const at::Tensor* bias_im, const at::Tensor* weight_mask = nullptr) {
  check_complex(op, "input", x);
  TORCH_CHECK(x.dim() >= 1, op, ": input must have at least 1 dimension (the features), got a 0-d tensor");
  check_real_part(op, "weight_re", weight_re, x);
  check_real_part(op, "weight_im", weight_im, x);
  TORCH_CHECK(weight_re.dim() == 2, op, ": weight must be 2-D [out_features, in_features], got shape ", weight_re.sizes());
  TORCH_CHECK(
      weight_re.sizes() == weight_im.sizes(), op, ": weight_re has shape ", weight_re.sizes(),
      " but weight_im has shape ", weight_im.sizes());
  TORCH_CHECK(
      x.size(-1) == weight_re.size(1), op, ": input has ", x.size(-1),
      " features in its last dimension but weight expects in_features=", weight_re.size(1),
      " (input shape ", x.sizes(), ", weight shape ", weight_re.sizes(), ")");
  TORCH_CHECK((bias_re == nullptr) == (bias_im == nullptr), op, ": give both bias_re and bias_im, or neither");
  if (bias_re != nullptr) {
    check_real_part(op, "bias_re", *bias_re, x);
    check_real_part(op, "bias_im", *bias_im, x);
    for (const at::Tensor* b : {bias_re, bias_im}) {
      TORCH_CHECK(
          b->dim() == 1 && b->size(0) == weight_re.size(0), op, ": bias must have shape [",
          weight_re.size(0), "] (out_features), got ", b->sizes());
    }
  }
  if (weight_mask != nullptr) check_weight_mask(op, *weight_mask, weight_re, x);
}

// [*, cols] -> [rows, cols]: a view whenever the strides allow it (explicit row count, so that
// cols == 0 works too).
at::Tensor as_matrix(const at::Tensor& t) {
  const int64_t cols = t.size(-1);
  return t.reshape({c10::multiply_integers(t.sizes().begin(), t.sizes().end() - 1), cols});
}

// The complex tensor W = re + i im, for the backend's complex GEMM ("4m"). When re and im are
// the two halves of one interleaved complex buffer (cplxfast.nn layers allocate their real and
// imag Parameters that way, and the complex-weight ops pass real/imag views of W), W is a view
// of that buffer and nothing is copied; otherwise (e.g. a lazily conjugated W) it is built.
at::Tensor complex_of(const at::Tensor& re, const at::Tensor& im) {
  const bool interleaved = !re.is_neg() && !im.is_neg() && re.is_alias_of(im) &&
                           re.sizes() == im.sizes() && re.strides() == im.strides() &&
                           im.storage_offset() == re.storage_offset() + 1 && re.storage_offset() % 2 == 0 &&
                           std::all_of(re.strides().begin(), re.strides().end(), [](int64_t s) { return s % 2 == 0; });
  if (!interleaved) return at::complex(re, im);
  std::vector<int64_t> sizes = re.sizes().vec(), strides = re.strides().vec();
  sizes.push_back(2);
  strides.push_back(1);
  return at::view_as_complex(re.as_strided(sizes, strides, re.storage_offset()));
}

// The complex operand of the 4M GEMM: complex_of(W), times W's mask when it has one (one
// complex copy, the operand itself; a real product, so exactly m Re W + i m Im W).
at::Tensor complex_weight(const ComplexPair& w) {
  const at::Tensor z = complex_of(w.re, w.im);
  if (!w.scale.defined()) return z;
  const at::Tensor scale = w.scale.unsqueeze(-1);
  if (!z.is_alias_of(w.re)) return at::view_as_complex(at::view_as_real(z).mul_(scale));  // already a copy
  return at::view_as_complex(at::view_as_real(z).mul(scale));
}

ComplexPair parts(const at::Tensor& z) { return {at::real(z), at::imag(z)}; }

ComplexPair rows_of(const ComplexPair& p, int64_t r0, int64_t rows) {
  return {p.re.narrow(0, r0, rows), p.im.narrow(0, r0, rows)};
}

// P real planes [P, rows, cols] (3M's three, or four with the Gaussian layers' modulus plane)
// carved from the front of a reusable slice, so the last, shorter chunk still gets contiguous (and
// aligned) planes.
at::Tensor planes_view(const at::Tensor& slice, int64_t rows, int64_t cols, int64_t P = 3) {
  return Workspace::planes_in(slice, P, rows, cols);
}

// Elements of a slice holding P planes [rows, cols].
int64_t planes_numel(int64_t rows, int64_t cols, int64_t P = 3) { return P * Workspace::plane_stride(rows, cols); }

// The scratch of one 3M call: operand planes in the operands' dtype and products in the input's
// real dtype, in one Workspace block when the two are the same.
class Scratch {
 public:
  Scratch(const at::Tensor& x, const Precision& prec, int64_t plane_numel, int64_t product_numel)
      : products_(real_options(x), (prec.mixed ? 0 : plane_numel) + product_numel) {
    if (prec.mixed) operands_.emplace(x.options().dtype(prec.operands), plane_numel);
  }
  at::Tensor planes(int64_t numel) { return (operands_ ? *operands_ : products_).take(numel); }
  at::Tensor products(int64_t numel) { return products_.take(numel); }

 private:
  Workspace products_;
  std::optional<Workspace> operands_;
};

// P[j] (= or +=) A[j] B[j] for the three planes.
void real_products(const Gemm3mBackend& backend, at::Tensor P, const at::Tensor& A, const at::Tensor& B,
                   bool accumulate, bool mixed) {
  if (mixed) {
    for (int64_t j = 0; j < 3; ++j) backend.mixed_mm(P.select(0, j), A.select(0, j), B.select(0, j), accumulate);
    return;
  }
  if (backend.batched) {
    if (accumulate) {
      P.baddbmm_(A, B);
    } else {
      at::bmm_out(P, A, B);
    }
    return;
  }
  for (int64_t j = 0; j < 3; ++j) {
    at::Tensor Pj = P.select(0, j);
    if (accumulate) {
      Pj.addmm_(A.select(0, j), B.select(0, j));
    } else {
      at::mm_out(Pj, A.select(0, j), B.select(0, j));
    }
  }
}

int64_t chunk_of(const Gemm3mBackend& backend, int64_t M) {
  return backend.chunk_rows > 0 ? std::min(backend.chunk_rows, M) : M;
}

// The gradient of a complex parameter in the layout its op returns: two real tensors (the real
// parts of a layer's Parameters), or one complex tensor (z) whose real/imag views are written.
struct ParamGrad {
  at::Tensor re, im, z;

  ParamGrad(at::IntArrayRef sizes, const at::Tensor& x, bool complex) {
    if (complex) {
      z = at::empty(sizes, x.options().memory_format(at::MemoryFormat::Contiguous));
    } else {
      re = at::empty(sizes, real_options(x));
      im = at::empty(sizes, real_options(x));
    }
  }
  ParamGrad() = default;
  // Its parts as a destination; scale: the weight's mask, applied as they are written.
  ComplexPair parts(const at::Tensor& scale = at::Tensor()) const {
    return z.defined() ? ComplexPair{at::real(z), at::imag(z), scale} : ComplexPair{re, im, scale};
  }
};

struct LinearGrads {
  at::Tensor x;
  ParamGrad weight, bias;
};

// z [rows, cols] complex as the real matrix [rows, 2 cols] of its interleaved (re, im) pairs,
// rounded to dtype: the operand of the block form (gemm3m.h), in one pass.
at::Tensor interleaved_real(const at::Tensor& z, at::ScalarType dtype) {
  at::Tensor out = at::empty({z.size(0), 2 * z.size(1)}, z.options().dtype(dtype).memory_format(at::MemoryFormat::Contiguous));
  out.view({z.size(0), z.size(1), 2}).copy_(at::view_as_real(z.resolve_conj()));
  return out;
}

// Bt [2N, 2K], rounded to dtype, for W = re + i im [N, K]: rows (n, 0) hold the interleaved pairs
// (Re W, -Im W)[n, :], rows (n, 1) (Im W, Re W)[n, :]. Its transpose is the block matrix of y = x W^T
// ([M, 2K] x [2K, 2N]); Bt itself is that of the input gradient g conj(W) ([M, 2N] x [2N, 2K]).
at::Tensor block_weight(const ComplexPair& w, at::ScalarType dtype) {
  const int64_t N = w.re.size(0), K = w.re.size(1);
  at::Tensor bt = at::empty({N, 2, K, 2}, w.re.options().dtype(dtype).memory_format(at::MemoryFormat::Contiguous));
  const auto fill = [&](int64_t a, int64_t b, const at::Tensor& part) -> at::Tensor {
    at::Tensor dst = bt.select(1, a).select(2, b);
    return w.scale.defined() ? at::mul_out(dst, part, w.scale) : dst.copy_(part);  // the mask, if any
  };
  fill(0, 0, w.re);
  fill(0, 1, w.im).neg_();
  fill(1, 0, w.im);
  fill(1, 1, w.re);
  return bt.view({2 * N, 2 * K});
}

// y [M, N] = x W^T + b by the block form, written into y's interleaved float32 parts.
void forward_block(const at::Tensor& y, const at::Tensor& x, const ComplexPair& weight, const ComplexPair* bias,
                   at::ScalarType dtype, const Gemm3mBackend& backend) {
  const int64_t M = y.size(0), N = y.size(1);
  if (bias != nullptr) y.copy_(complex_of(bias->re, bias->im).expand({M, N}));
  backend.mixed_mm(at::view_as_real(y).view({M, 2 * N}), interleaved_real(x, dtype), block_weight(weight, dtype).t(),
                   /*accumulate=*/bias != nullptr);
}

// The weight (and input) gradients by the block form. G = g2^T x2 [2N, 2K] holds the four real
// products: grad_W = (G[n0, k0] + G[n1, k1]) + i (G[n1, k0] - G[n0, k1]).
void backward_block(LinearGrads& out, const at::Tensor& g, const at::Tensor& x, const ComplexPair& weight,
                    bool need_x, bool need_w, bool complex_grads, at::ScalarType dtype, const Gemm3mBackend& backend) {
  const int64_t M = x.size(0), N = weight.re.size(0), K = weight.re.size(1);
  const at::Tensor g2 = interleaved_real(g, dtype);
  if (need_x) {
    out.x = at::empty({M, K}, x.options().memory_format(at::MemoryFormat::Contiguous));
    backend.mixed_mm(at::view_as_real(out.x).view({M, 2 * K}), g2, block_weight(weight, dtype), false);
  }
  if (need_w) {
    const at::Tensor G = at::empty({2 * N, 2 * K}, real_options(x));
    backend.mixed_mm(G, g2.t(), interleaved_real(x, dtype), false);
    const at::Tensor G4 = G.view({N, 2, K, 2});
    const auto product = [&](int64_t a, int64_t b) { return G4.select(1, a).select(2, b); };
    out.weight = ParamGrad({N, K}, x, complex_grads);
    ComplexPair p = out.weight.parts();
    at::add_out(p.re, product(0, 0), product(1, 1));
    at::sub_out(p.im, product(1, 0), product(0, 1));
    if (weight.scale.defined()) p.re.mul_(weight.scale), p.im.mul_(weight.scale);  // in place: no copy
  }
}

at::Tensor forward_impl(const char* op, const at::Tensor& x_in, const ComplexPair& weight, const ComplexPair* bias,
                        c10::string_view algorithm, std::optional<at::ScalarType> operand_dtype,
                        const Gemm3mBackend& backend) {
  const int64_t N = weight.re.size(0), K = weight.re.size(1);
  std::vector<int64_t> out_shape = x_in.sizes().vec();
  out_shape.back() = N;

  const at::Tensor x = as_matrix(x_in);
  const int64_t M = x.size(0);
  at::Tensor y = at::empty({M, N}, x.options().memory_format(at::MemoryFormat::Contiguous));

  const Precision prec = resolve_precision(op, x, operand_dtype);
  const Algorithm algo = resolve_algorithm(op, algorithm, M, N, K, x.scalar_type(), prec.mixed, backend);
  if (algo == Algorithm::kBlock) {
    forward_block(y, x, weight, bias, prec.operands, backend);
    return y.view(out_shape);
  }
  if (algo == Algorithm::k4M) {
    const at::Tensor w = complex_weight(weight);
    if (bias != nullptr) {
      at::addmm_out(y, complex_of(bias->re, bias->im), x, w.t());
    } else {
      at::mm_out(y, x, w.t());
    }
    return y.view(out_shape);
  }

  const int64_t chunk = chunk_of(backend, M);
  Scratch ws(x, prec, planes_numel(N, K) + planes_numel(chunk, K), planes_numel(chunk, N));
  at::Tensor w_planes = planes_view(ws.planes(planes_numel(N, K)), N, K);
  backend.planes.split(weight, /*conj=*/false, w_planes.unbind(0));
  const at::Tensor w_planes_t = w_planes.transpose(1, 2);  // planes of W^T, [3, K, N]
  const ComplexPair b = bias != nullptr ? *bias : ComplexPair{};
  const ComplexPair xs = parts(x), ys = parts(y);

  at::Tensor x_buf = ws.planes(planes_numel(chunk, K));
  at::Tensor p_buf = ws.products(planes_numel(chunk, N));
  for (int64_t r0 = 0; r0 < M; r0 += chunk) {
    const int64_t rows = std::min(chunk, M - r0);
    at::Tensor x_planes = planes_view(x_buf, rows, K);
    at::Tensor products = planes_view(p_buf, rows, N);
    backend.planes.split(rows_of(xs, r0, rows), /*conj=*/false, x_planes.unbind(0));
    real_products(backend, products, x_planes, w_planes_t, /*accumulate=*/false, prec.mixed);
    backend.planes.combine(products.unbind(0), b, rows_of(ys, r0, rows));
  }
  return y.view(out_shape);
}

LinearGrads backward_impl(const char* op, const at::Tensor& grad_in, const at::Tensor& x_in, const ComplexPair& weight,
                          c10::string_view algorithm, std::array<bool, 3> output_mask, bool complex_grads,
                          std::optional<at::ScalarType> operand_dtype, const Gemm3mBackend& backend) {
  check_complex(op, "grad", grad_in);
  check_same_dtype_device(op, "grad", grad_in, x_in);
  const int64_t N = weight.re.size(0), K = weight.re.size(1);
  std::vector<int64_t> grad_shape = x_in.sizes().vec();
  grad_shape.back() = N;
  TORCH_CHECK(
      grad_in.sizes().vec() == grad_shape, op, ": grad has shape ", grad_in.sizes(),
      " but the output of linear has shape ", at::IntArrayRef(grad_shape));

  const at::Tensor g = as_matrix(grad_in);
  const at::Tensor x = as_matrix(x_in);
  const int64_t M = x.size(0);
  const bool need_x = output_mask[0], need_w = output_mask[1], need_b = output_mask[2];
  const Precision prec = resolve_precision(op, x, operand_dtype);

  LinearGrads out;
  if (need_b) {
    const at::Tensor gb = g.sum(0);
    if (complex_grads) {
      out.bias.z = gb;
    } else {
      out.bias = ParamGrad({N}, x, false);
      backend.planes.copy_parts(parts(gb.view({1, N})), {out.bias.re.view({1, N}), out.bias.im.view({1, N})});
    }
  }
  if (!need_x && !need_w) return out;

  const Algorithm algo = resolve_algorithm(op, algorithm, M, N, K, x.scalar_type(), prec.mixed, backend);
  if (algo == Algorithm::kBlock) {
    backward_block(out, g, x, weight, need_x, need_w, complex_grads, prec.operands, backend);
    if (need_x) out.x = out.x.view(x_in.sizes());
    return out;
  }
  if (algo == Algorithm::k4M) {
    // conj(W) is lazy; the backend resolves it (a copy of W) since BLAS has no conjugated,
    // untransposed operand.
    if (need_x) out.x = at::mm(g, complex_weight(weight).conj()).view(x_in.sizes());
    if (need_w) {
      // grad_W = conj(g^H x): g^H is a conjugate-transposed operand that BLAS takes as it is,
      // where conj(x) would be copied (measured 3-5x slower than the conjugation afterwards);
      // the outer conjugation is a sign in the de-interleaving pass, or one in-place pass.
      out.weight = ParamGrad({N, K}, x, complex_grads);
      if (complex_grads) {
        TORCH_INTERNAL_ASSERT(!weight.scale.defined());  // masks come with the parts variant only
        at::mm_out(out.weight.z, g.t().conj(), x).conj_physical_();
      } else {
        backend.planes.copy_parts(parts(at::mm(g.t().conj(), x).conj()), out.weight.parts(weight.scale));
      }
    }
    return out;
  }

  // grad_x [M, K] = g conj(W): long side M.  grad_W [N, K] = g^T conj(x): reduces over M.
  // Both are driven by one pass over M in chunks, so g's planes are built once for both.
  const int64_t chunk = chunk_of(backend, M);
  // Operand planes: conj(W) (for grad_x), x's chunk (for grad_W) and g's chunk; products: grad_x's
  // chunk and grad_W's (accumulated over the chunks of M).
  Scratch ws(x, prec,
             (need_x ? planes_numel(N, K) : 0) + (need_w ? planes_numel(chunk, K) : 0) + planes_numel(chunk, N),
             (need_x ? planes_numel(chunk, K) : 0) + (need_w ? planes_numel(N, K) : 0));
  const ComplexPair gs = parts(g), xs = parts(x);
  at::Tensor w_planes, gx_buf, gw_products, x_buf;
  ComplexPair gxs;
  if (need_x) {
    out.x = at::empty({M, K}, x.options().memory_format(at::MemoryFormat::Contiguous));
    gxs = parts(out.x);
    w_planes = planes_view(ws.planes(planes_numel(N, K)), N, K);  // planes of conj(W)
    backend.planes.split(weight, /*conj=*/true, w_planes.unbind(0));
    gx_buf = ws.products(planes_numel(chunk, K));
  }
  if (need_w) {
    gw_products = planes_view(ws.products(planes_numel(N, K)), N, K);  // accumulated over the chunks of M
    x_buf = ws.planes(planes_numel(chunk, K));
  }
  at::Tensor g_buf = ws.planes(planes_numel(chunk, N));
  for (int64_t r0 = 0; r0 < M; r0 += chunk) {
    const int64_t rows = std::min(chunk, M - r0);
    at::Tensor g_planes = planes_view(g_buf, rows, N);
    backend.planes.split(rows_of(gs, r0, rows), /*conj=*/false, g_planes.unbind(0));
    if (need_x) {
      at::Tensor products = planes_view(gx_buf, rows, K);
      real_products(backend, products, g_planes, w_planes, /*accumulate=*/false, prec.mixed);
      backend.planes.combine(products.unbind(0), ComplexPair{}, rows_of(gxs, r0, rows));
    }
    if (need_w) {
      at::Tensor x_planes = planes_view(x_buf, rows, K);  // planes of conj(x)
      backend.planes.split(rows_of(xs, r0, rows), /*conj=*/true, x_planes.unbind(0));
      real_products(backend, gw_products, g_planes.transpose(1, 2), x_planes, /*accumulate=*/r0 > 0, prec.mixed);
    }
  }
  if (need_x) out.x = out.x.view(x_in.sizes());
  if (need_w) {
    out.weight = ParamGrad({N, K}, x, complex_grads);
    backend.planes.combine(gw_products.unbind(0), ComplexPair{}, out.weight.parts(weight.scale));
  }
  return out;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_gaussian_forward(
    const at::Tensor& x_in, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im, const at::Tensor& log_sigma2,
    c10::string_view algorithm, const Gemm3mBackend& backend, const NoiseKernels& noise) {
  const char* op = "cplxfast.linear_gaussian";
  const at::Tensor* b_re = present(bias_re);
  const at::Tensor* b_im = present(bias_im);
  check_linear_args(op, x_in, weight_re, weight_im, b_re, b_im);
  check_log_sigma2(op, log_sigma2, weight_re, x_in);
  const ComplexPair bias = b_re != nullptr ? ComplexPair{*b_re, *b_im} : ComplexPair{};
  const ComplexPair weight{weight_re, weight_im};
  const int64_t N = weight_re.size(0), K = weight_re.size(1);
  std::vector<int64_t> out_shape = x_in.sizes().vec();
  out_shape.back() = N;
  const at::Tensor x = as_matrix(x_in);
  const int64_t M = x.size(0);
  const at::Tensor sigma2_t = log_sigma2.exp().t();  // [K, N]
  const Algorithm algo = resolve_algorithm(op, algorithm, M, N, K, x.scalar_type(), /*mixed=*/false, backend);
  if (algo != Algorithm::k3M) {  // no planes to fuse into: the plain layer, then the noise
    const at::Tensor mu = forward_impl(op, x, weight, b_re != nullptr ? &bias : nullptr, algorithm, std::nullopt, backend);
    const at::Tensor s2 = at::mm(modulus_squared(x), sigma2_t);
    auto [out, rng] = gaussian_reparam_op(mu, s2);
    return {out.view(out_shape), s2.view(out_shape), rng};
  }

  at::Tensor y = at::empty({M, N}, x.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor s2 = at::empty({M, N}, real_options(x));
  at::Tensor rng = at::empty({2}, x.options().dtype(at::kLong));
  noise.draw(rng);
  // As forward_impl's 3M, with a fourth plane of x (|x|^2) and a fourth product (s2, written
  // straight into the result), and the noise added as the chunk is recombined.
  const int64_t chunk = chunk_of(backend, M);
  Scratch ws(x, resolve_precision(op, x, std::nullopt), planes_numel(N, K) + planes_numel(chunk, K, 4),
             planes_numel(chunk, N));
  at::Tensor w_planes = planes_view(ws.planes(planes_numel(N, K)), N, K);
  backend.planes.split(weight, /*conj=*/false, w_planes.unbind(0));
  const at::Tensor w_planes_t = w_planes.transpose(1, 2);
  const ComplexPair xs = parts(x), ys = parts(y);
  at::Tensor x_buf = ws.planes(planes_numel(chunk, K, 4));
  at::Tensor p_buf = ws.products(planes_numel(chunk, N));
  for (int64_t r0 = 0; r0 < M; r0 += chunk) {
    const int64_t rows = std::min(chunk, M - r0);
    const at::Tensor x_planes = planes_view(x_buf, rows, K, 4);
    const at::Tensor products = planes_view(p_buf, rows, N);
    at::Tensor s2_rows = s2.narrow(0, r0, rows);
    backend.planes.split(rows_of(xs, r0, rows), /*conj=*/false, x_planes.unbind(0));
    real_products(backend, products, x_planes.narrow(0, 0, 3), w_planes_t, /*accumulate=*/false, false);
    at::mm_out(s2_rows, x_planes.select(0, 3), sigma2_t);
    noise.combine(products.unbind(0), b_re != nullptr ? bias : ComplexPair{}, NoiseSource{s2_rows, r0 * N, rng},
                  rows_of(ys, r0, rows));
  }
  return {y.view(out_shape), s2.view(out_shape), rng};
}

at::Tensor linear_forward(
    const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im,
    c10::string_view algorithm, std::optional<at::ScalarType> operand_dtype,
    const c10::optional<at::Tensor>& weight_mask, const Gemm3mBackend& backend) {
  const char* op = "cplxfast.linear";
  const at::Tensor* b_re = present(bias_re);
  const at::Tensor* b_im = present(bias_im);
  const at::Tensor* mask = present(weight_mask);
  check_linear_args(op, x, weight_re, weight_im, b_re, b_im, mask);
  const ComplexPair bias = b_re != nullptr ? ComplexPair{*b_re, *b_im} : ComplexPair{};
  return forward_impl(op, x, masked_pair(weight_re, weight_im, mask), b_re != nullptr ? &bias : nullptr, algorithm,
                      operand_dtype, backend);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> linear_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
    const at::Tensor& weight_im, c10::string_view algorithm, std::array<bool, 3> output_mask,
    std::optional<at::ScalarType> operand_dtype, const c10::optional<at::Tensor>& weight_mask,
    const Gemm3mBackend& backend) {
  const char* op = "cplxfast.linear_backward";
  const at::Tensor* mask = present(weight_mask);
  check_linear_args(op, x, weight_re, weight_im, nullptr, nullptr, mask);
  const LinearGrads g = backward_impl(op, grad, x, masked_pair(weight_re, weight_im, mask), algorithm, output_mask,
                                      false, operand_dtype, backend);
  return {g.x, g.weight.re, g.weight.im, g.bias.re, g.bias.im};
}

at::Tensor linear_complex_forward(
    const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
    c10::string_view algorithm, std::optional<at::ScalarType> operand_dtype, const Gemm3mBackend& backend) {
  const char* op = "cplxfast.linear_complex";
  const at::Tensor* b = present(bias);
  check_complex_params(op, x, weight, b);
  const ComplexPair w = parts(weight);
  const ComplexPair bp = b != nullptr ? parts(*b) : ComplexPair{};
  check_linear_args(op, x, w.re, w.im, b != nullptr ? &bp.re : nullptr, b != nullptr ? &bp.im : nullptr);
  return forward_impl(op, x, w, b != nullptr ? &bp : nullptr, algorithm, operand_dtype, backend);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_complex_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, c10::string_view algorithm,
    std::array<bool, 3> output_mask, std::optional<at::ScalarType> operand_dtype, const Gemm3mBackend& backend) {
  const char* op = "cplxfast.linear_complex_backward";
  check_complex_params(op, x, weight, nullptr);
  const ComplexPair w = parts(weight);
  check_linear_args(op, x, w.re, w.im, nullptr, nullptr);
  const LinearGrads g = backward_impl(op, grad, x, w, algorithm, output_mask, true, operand_dtype, backend);
  return {g.x, g.weight.z, g.bias.z};
}

}  // namespace cplxfast
