// Host-side checks and layout of the reparametrisation ops (see reparam.h).
#include "common/reparam.h"

#include <ATen/ATen.h>

#include "common/checks.h"
#include "common/layout.h"

namespace cplxfast {
namespace {

// s2 in the layout that orders the noise: s2 itself when it is dense (non-overlapping, no gaps),
// else a contiguous copy. Decided from s2 alone, so the backward finds the forward's order when it
// gets the same s2 (autograd saves it); an s2 of another layout would pair elements with other
// noise. No lazy neg bit reaches here: the dispatcher's Negative fallback materialises such views
// first (keeping their strides), as tests/test_reparam.py checks.
at::Tensor noise_order(const at::Tensor& s2) { return s2.is_non_overlapping_and_dense() ? s2 : s2.contiguous(); }

}  // namespace

ReparamOperands plan_reparam(const char* op, const char* z_name, const at::Tensor& z, const at::Tensor& s2) {
  check_complex(op, z_name, z);
  check_real_part(op, "s2", s2, z);
  TORCH_CHECK(s2.sizes() == z.sizes(), op, ": s2 has shape ", s2.sizes(), " but ", z_name, " has shape ", z.sizes());
  const at::Tensor s = noise_order(s2);
  // Complex strides count complex elements: the same numbers as s's strides count reals.
  return {with_layout_of(z, s), s, s.numel()};
}

void check_rng_state(const char* op, const at::Tensor& rng, const at::Tensor& like) {
  TORCH_CHECK(rng.defined() && rng.scalar_type() == at::kLong && rng.numel() == 2 && rng.is_contiguous(), op,
              ": rng must be the int64 [2] generator state that gaussian_reparam returned");
  TORCH_CHECK(rng.device() == like.device(), op, ": rng is on ", rng.device(), " but s2 is on ", like.device());
}

}  // namespace cplxfast
