#include "common/layout.h"

#include <ATen/ATen.h>

namespace cplxfast {

at::Tensor with_layout_of(const at::Tensor& t, const at::Tensor& like) {
  if (t.strides() == like.strides() && !t.is_conj() && !t.is_neg()) return t;
  at::Tensor copy = at::empty_strided(like.sizes(), like.strides(), t.options());
  copy.copy_(t);
  return copy;
}

at::Tensor empty_with_layout_of(const at::Tensor& like) {
  return at::empty_strided(like.sizes(), like.strides(), like.options());
}

}  // namespace cplxfast
