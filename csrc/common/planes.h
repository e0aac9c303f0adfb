// The memory-bound passes around the real products of the Gauss 3M trick (and of the 4M
// block form), shared by linear (common/gemm3m.cpp) and convolution (common/conv.cpp).
//
// A complex operand is a pair of real strided views (re, im): at::real/at::imag of an
// interleaved complex tensor, or two separate real tensors (a layer's weight.real and
// weight.imag Parameters), with no copy either way. A lazily conjugated or negated complex
// tensor yields views with the neg bit set; kernels read raw memory and fold that bit into signs.
//
// Its "planes" are P real [rows, cols] matrices, each with contiguous columns and its own row
// stride and address: the planes of one plane-major buffer, separate backend results, or
// planes interleaved per row ([rows, P, cols], the channel order of a grouped convolution).
//   P = 3 (3M):  Re s, sgn Im s, Re s + sgn Im s
//   P = 2 (4M):  Re s, sgn Im s
//   P = 4 (3M and the modulus):  the 3M planes and |s|^2, split only (an unscaled s): the Gaussian
//         layers' variance takes |x|^2 from the pass that splits x (common/reparam.h)
// with sgn = -1 for conj(s). The real products of the planes are recombined into a complex
// result: (P0 - P1) + i (P2 - P0 - P1) for 3M, P0 + i P1 for 4M.
#pragma once
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/TensorBody.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "common/layout.h"

namespace cplxfast {

// A complex matrix as two real [rows, cols] views with any strides (neg bits allowed), and an
// optional real [rows, cols] scale (column stride 1, no neg bit): a masked layer's weight mask.
// Read (split's source), the pair stands for scale * (re + i im); written (combine's and
// copy_parts' destination), each value is multiplied by scale before it is stored (the gradient
// of a masked weight). So the mask rides in the passes that already touch the weight, and no
// masked copy of it is made.
struct ComplexPair {
  at::Tensor re, im, scale;
};

// W = re + i im with its mask (nullptr: none) as the pair's scale, in the form the kernels read.
inline ComplexPair masked_pair(const at::Tensor& re, const at::Tensor& im, const at::Tensor* mask) {
  return {re, im, mask != nullptr ? mask->resolve_neg().contiguous() : at::Tensor()};
}

// A pair's scale as the kernels read it (a real [rows, cols] view, column stride 1), or none
// (data == nullptr). Host side, for both backends' kernels.
template <typename T>
View<T> scale_of(const ComplexPair& p) {
  if (!p.scale.defined()) return View<T>{nullptr, 0, 1, T(1)};
  TORCH_INTERNAL_ASSERT(p.scale.dim() == 2 && (p.scale.size(1) <= 1 || p.scale.stride(1) == 1) && !p.scale.is_neg());
  return view_of<T>(p.scale);
}

struct PlaneKernels {
  // planes (P real [rows, cols] matrices, column stride 1) <- the planes of s (or of conj(s)),
  // s.scale applied.
  void (*split)(const ComplexPair& s, bool conj, at::TensorList planes);
  // out <- the recombination of the P products (real [rows, cols], column stride 1), plus
  // bias[col] when bias holds two real [cols] views (no scale then); out is two real [rows, cols]
  // views, out.scale applied.
  void (*combine)(at::TensorList products, const ComplexPair& bias, const ComplexPair& out);
  // dst.re <- src.re, dst.im <- src.im for [rows, cols] views (neg bits of src applied, src
  // unscaled, dst.scale applied): one pass that de-interleaves a complex result into two real
  // tensors (dst column stride 1).
  void (*copy_parts)(const ComplexPair& src, const ComplexPair& dst);
};

// f(T{}, U{}) for the split of parts of dtype T into planes of dtype U: U = T (float, double), or
// a 16-bit U (bfloat16, half) from float parts (mixed precision). Both backends' split kernels.
template <typename F>
void dispatch_split_types(const ComplexPair& s, at::TensorList planes, const F& f) {
  const at::ScalarType planes_dtype = planes[0].scalar_type();
  if (planes_dtype == at::kBFloat16 || planes_dtype == at::kHalf) {
    TORCH_INTERNAL_ASSERT(s.re.scalar_type() == at::kFloat);
    if (planes_dtype == at::kBFloat16) return f(float{}, c10::BFloat16{});
    return f(float{}, c10::Half{});
  }
  AT_DISPATCH_FLOATING_TYPES(planes_dtype, "cplxfast_split_planes", [&] { f(scalar_t{}, scalar_t{}); });
}

}  // namespace cplxfast
