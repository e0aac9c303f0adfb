// Device-agnostic driver of the fused 3M complex GEMM; see gemm3m.h.
#include "common/gemm3m.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>

#include "common/checks.h"

namespace cplxfast {
namespace {

enum class Algorithm { k3M, k4M };

Algorithm resolve_algorithm(
    const char* op, c10::string_view name, int64_t M, int64_t N, int64_t K,
    at::ScalarType dtype, const Gemm3mBackend& backend) {
  Algorithm algo;
  if (name == "3m") {
    algo = Algorithm::k3M;
  } else if (name == "4m") {
    algo = Algorithm::k4M;
  } else if (name == "auto") {
    algo = backend.prefer_3m(M, N, K, dtype) ? Algorithm::k3M : Algorithm::k4M;
  } else {
    TORCH_CHECK(false, op, ": algorithm must be \"auto\", \"3m\" or \"4m\", got \"", name, "\"");
  }
  // An empty product has nothing to gain from 3M; ATen's complex GEMM handles every empty case.
  if (M == 0 || N == 0 || K == 0) algo = Algorithm::k4M;
  return algo;
}

void check_linear_args(
    const char* op, const at::Tensor& x, const at::Tensor& weight, const at::Tensor* bias) {
  check_complex(op, "input", x);
  check_complex(op, "weight", weight);
  check_same_dtype_device(op, "weight", weight, x);
  TORCH_CHECK(weight.dim() == 2, op, ": weight must be 2-D [out_features, in_features], got shape ", weight.sizes());
  TORCH_CHECK(x.dim() >= 1, op, ": input must have at least 1 dimension (the features), got a 0-d tensor");
  TORCH_CHECK(
      x.size(-1) == weight.size(1), op, ": input has ", x.size(-1),
      " features in its last dimension but weight expects in_features=", weight.size(1),
      " (input shape ", x.sizes(), ", weight shape ", weight.sizes(), ")");
  if (bias != nullptr) {
    check_complex(op, "bias", *bias);
    check_same_dtype_device(op, "bias", *bias, x);
    TORCH_CHECK(
        bias->dim() == 1 && bias->size(0) == weight.size(0), op, ": bias must have shape [",
        weight.size(0), "] (out_features), got ", bias->sizes());
  }
}

// [*, cols] -> [rows, cols]: a view whenever the strides allow it (explicit row count, so that
// cols == 0 works too).
at::Tensor as_matrix(const at::Tensor& t) {
  const int64_t cols = t.size(-1);
  return t.reshape({c10::multiply_integers(t.sizes().begin(), t.sizes().end() - 1), cols});
}

// Fold lazy negation into the data so kernels can read raw memory; the conj bit is kept and
// folded into the plane signs by split_into.
at::Tensor raw(const at::Tensor& t) { return t.is_neg() ? t.resolve_neg() : t; }

void split_into(const Gemm3mBackend& backend, const at::Tensor& s, bool conj, const at::Tensor& planes) {
  backend.split(s, conj != s.is_conj(), planes);
}

// Real planes buffer [3, rows, cols] carved from the front of a reusable flat buffer, so the
// last, shorter chunk still gets contiguous planes.
at::Tensor planes_view(const at::Tensor& flat, int64_t rows, int64_t cols) {
  return flat.narrow(0, 0, 3 * rows * cols).view({3, rows, cols});
}

// P[j] (= or +=) A[j] B[j] for the three planes.
void real_products(const Gemm3mBackend& backend, at::Tensor P, const at::Tensor& A, const at::Tensor& B, bool accumulate) {
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

}  // namespace

at::Tensor linear_forward(
    const at::Tensor& x_in, const at::Tensor& weight_in, const c10::optional<at::Tensor>& bias_in,
    c10::string_view algorithm, const Gemm3mBackend& backend) {
  const char* op = "cplxfast.linear";
  const at::Tensor* bias_ptr = bias_in.has_value() && bias_in->defined() ? &*bias_in : nullptr;
  check_linear_args(op, x_in, weight_in, bias_ptr);
  const int64_t N = weight_in.size(0), K = weight_in.size(1);
  std::vector<int64_t> out_shape = x_in.sizes().vec();
  out_shape.back() = N;

  at::Tensor x = as_matrix(raw(x_in));
  at::Tensor weight = raw(weight_in);
  at::Tensor bias = bias_ptr ? raw(*bias_ptr).resolve_conj() : at::Tensor();
  const int64_t M = x.size(0);
  at::Tensor y = at::empty({M, N}, x.options().memory_format(at::MemoryFormat::Contiguous));

  if (resolve_algorithm(op, algorithm, M, N, K, x.scalar_type(), backend) == Algorithm::k4M) {
    if (bias.defined()) {
      at::addmm_out(y, bias, x, weight.t());
    } else {
      at::mm_out(y, x, weight.t());
    }
    return y.view(out_shape);
  }

  const auto real_opts = x.options().dtype(c10::toRealValueType(x.scalar_type()));
  at::Tensor w_planes = at::empty({3, N, K}, real_opts);
  split_into(backend, weight, /*conj=*/false, w_planes);
  at::Tensor w_planes_t = w_planes.transpose(1, 2);  // planes of W^T, [3, K, N]

  const int64_t chunk = chunk_of(backend, M);
  at::Tensor x_buf = at::empty({3 * chunk * K}, real_opts);
  at::Tensor p_buf = at::empty({3 * chunk * N}, real_opts);
  for (int64_t r0 = 0; r0 < M; r0 += chunk) {
    const int64_t rows = std::min(chunk, M - r0);
    at::Tensor x_planes = planes_view(x_buf, rows, K);
    at::Tensor products = planes_view(p_buf, rows, N);
    split_into(backend, x.narrow(0, r0, rows), /*conj=*/false, x_planes);
    real_products(backend, products, x_planes, w_planes_t, /*accumulate=*/false);
    backend.combine(products, bias, y.narrow(0, r0, rows));
  }
  return y.view(out_shape);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& weight_in,
    c10::string_view algorithm, std::array<bool, 3> output_mask, const Gemm3mBackend& backend) {
  const char* op = "cplxfast.linear_backward";
  check_linear_args(op, x_in, weight_in, nullptr);
  check_complex(op, "grad", grad_in);
  check_same_dtype_device(op, "grad", grad_in, x_in);
  const int64_t N = weight_in.size(0), K = weight_in.size(1);
  std::vector<int64_t> grad_shape = x_in.sizes().vec();
  grad_shape.back() = N;
  TORCH_CHECK(
      grad_in.sizes().vec() == grad_shape, op, ": grad has shape ", grad_in.sizes(),
      " but the output of linear has shape ", at::IntArrayRef(grad_shape));

  at::Tensor g = as_matrix(raw(grad_in));
  at::Tensor x = as_matrix(raw(x_in));
  at::Tensor weight = raw(weight_in);
  const int64_t M = x.size(0);
  const bool need_x = output_mask[0], need_w = output_mask[1], need_b = output_mask[2];
  const auto contiguous = x.options().memory_format(at::MemoryFormat::Contiguous);

  at::Tensor grad_x, grad_w, grad_b;
  if (need_b) grad_b = g.sum(0);
  if (!need_x && !need_w) return {grad_x, grad_w, grad_b};

  // grad_x [M, K] = g conj(W): long side M.  grad_W [N, K] = g^T conj(x): reduces over M.
  // Both are driven by one pass over M in chunks, so g's planes are built once for both.
  const bool use_4m = resolve_algorithm(op, algorithm, M, N, K, x.scalar_type(), backend) == Algorithm::k4M;
  if (use_4m) {
    if (need_x) grad_x = at::mm(g, weight.conj()).view(x_in.sizes());
    if (need_w) grad_w = at::mm(g.t(), x.conj());
    return {grad_x, grad_w, grad_b};
  }

  const auto real_opts = x.options().dtype(c10::toRealValueType(x.scalar_type()));
  const int64_t chunk = chunk_of(backend, M);
  at::Tensor w_planes, gx_products, gx_buf, wt_products, x_buf;
  if (need_x) {
    grad_x = at::empty({M, K}, contiguous);
    w_planes = at::empty({3, N, K}, real_opts);  // planes of conj(W)
    split_into(backend, weight, /*conj=*/true, w_planes);
    gx_buf = at::empty({3 * chunk * K}, real_opts);
  }
  if (need_w) {
    wt_products = at::empty({3, N, K}, real_opts);  // accumulated over the chunks of M
    x_buf = at::empty({3 * chunk * K}, real_opts);
  }
  at::Tensor g_buf = at::empty({3 * chunk * N}, real_opts);
  for (int64_t r0 = 0; r0 < M; r0 += chunk) {
    const int64_t rows = std::min(chunk, M - r0);
    at::Tensor g_planes = planes_view(g_buf, rows, N);
    split_into(backend, g.narrow(0, r0, rows), /*conj=*/false, g_planes);
    if (need_x) {
      at::Tensor products = planes_view(gx_buf, rows, K);
      real_products(backend, products, g_planes, w_planes, /*accumulate=*/false);
      backend.combine(products, at::Tensor(), grad_x.narrow(0, r0, rows));
    }
    if (need_w) {
      at::Tensor x_planes = planes_view(x_buf, rows, K);  // planes of conj(x)
      split_into(backend, x.narrow(0, r0, rows), /*conj=*/true, x_planes);
      real_products(backend, wt_products, g_planes.transpose(1, 2), x_planes, /*accumulate=*/r0 > 0);
    }
  }
  if (need_x) grad_x = grad_x.view(x_in.sizes());
  if (need_w) {
    grad_w = at::empty({N, K}, contiguous);
    backend.combine(wt_products, at::Tensor(), grad_w);
  }
  return {grad_x, grad_w, grad_b};
}

}  // namespace cplxfast
