// The Gaussian reparametrisation on CPU: one pass over (mu, s2) forward, one over (g, s2)
// backward, the noise drawn in the loop (common/reparam.h). The seed is one draw from torch's
// default CPU generator, so torch.manual_seed makes runs repeatable; the noise of an element
// depends on its index only, not on the number of threads.
#include <mutex>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/reparam.h"

namespace cplxfast::cpu {
namespace {

constexpr int64_t kGrain = 4096;  // pairs of complex elements per task

uint64_t draw_seed() {
  auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(c10::nullopt, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);  // see ATen's note on using random generators
  return gen->random64();
}

// f(i, e_re, e_im) for every complex element i < n, with its noise.
template <typename T, typename F>
void for_each_noise(uint64_t seed, uint64_t offset, int64_t n, const F& f) {
  at::parallel_for(0, (n + 1) / 2, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      T e[4];
      reparam_math::noise_pair<T>(seed, offset, static_cast<uint64_t>(p), e);
      f(2 * p, e[0], e[1]);
      if (2 * p + 1 < n) f(2 * p + 1, e[2], e[3]);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> gaussian_reparam(const at::Tensor& mu, const at::Tensor& s2) {
  const ReparamOperands P = plan_reparam("cplxfast.gaussian_reparam", "mu", mu, s2);
  at::Tensor out = at::empty_strided(P.s2.sizes(), P.s2.strides(), P.z.options());
  at::Tensor rng = at::empty({2}, mu.options().dtype(at::kLong));
  const uint64_t seed = draw_seed(), offset = 0;
  rng.data_ptr<int64_t>()[0] = static_cast<int64_t>(seed);
  rng.data_ptr<int64_t>()[1] = static_cast<int64_t>(offset);
  AT_DISPATCH_FLOATING_TYPES(P.s2.scalar_type(), "cplxfast_gaussian_reparam_cpu", [&] {
    using T = scalar_t;
    const T* m = static_cast<const T*>(P.z.data_ptr());
    const T* v = P.s2.data_ptr<T>();
    T* o = static_cast<T*>(out.data_ptr());
    for_each_noise<T>(seed, offset, P.numel, [&](int64_t i, T e_re, T e_im) {
      reparam_math::forward(m[2 * i], m[2 * i + 1], v[i], e_re, e_im, o[2 * i], o[2 * i + 1]);
    });
  });
  return {out, rng};
}

at::Tensor gaussian_reparam_backward(const at::Tensor& grad, const at::Tensor& s2, const at::Tensor& rng) {
  const char* op = "cplxfast.gaussian_reparam_backward";
  const ReparamOperands P = plan_reparam(op, "grad", grad, s2);
  check_rng_state(op, rng, s2);
  const uint64_t seed = static_cast<uint64_t>(rng.data_ptr<int64_t>()[0]);
  const uint64_t offset = static_cast<uint64_t>(rng.data_ptr<int64_t>()[1]);
  at::Tensor grad_s2 = at::empty_strided(P.s2.sizes(), P.s2.strides(), P.s2.options());
  AT_DISPATCH_FLOATING_TYPES(P.s2.scalar_type(), "cplxfast_gaussian_reparam_backward_cpu", [&] {
    using T = scalar_t;
    const T* g = static_cast<const T*>(P.z.data_ptr());
    const T* v = P.s2.data_ptr<T>();
    T* gs = grad_s2.data_ptr<T>();
    for_each_noise<T>(seed, offset, P.numel, [&](int64_t i, T e_re, T e_im) {
      gs[i] = reparam_math::grad_s2(g[2 * i], g[2 * i + 1], v[i], e_re, e_im);
    });
  });
  return grad_s2;
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CPU, m) {
  m.impl("gaussian_reparam", &gaussian_reparam);
  m.impl("gaussian_reparam_backward", &gaussian_reparam_backward);
}

}  // namespace cplxfast::cpu
