// The Gaussian reparametrisation on CPU: one pass over (mu, s2) forward, one over (g, s2)
// backward, the noise drawn in the loop (common/reparam.h). The seed is one draw from torch's
// default CPU generator, so torch.manual_seed makes runs repeatable; the noise of an element
// depends on its index only, not on the number of threads.
//
// Elements are processed in blocks of kBlock pairs: Philox for the block's pairs, Box-Muller for
// its elements, then the element rule, each a branch-free loop that GCC vectorises (the
// generator and transform are most of the work: scalar, they took ~13 ns per element).
#include <algorithm>
#include <mutex>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/layout.h"
#include "cpu/planes.h"
#include "cpu/reparam.h"
#include "cpu/vectorize.h"

namespace cplxfast::cpu {
namespace {

constexpr int64_t kBlock = 32;            // pairs of complex elements per vectorised block
constexpr int64_t kGrain = 64 * kBlock;  // pairs per task

// e_re, e_im [2 * pairs] for the pairs [first, first + pairs), pairs <= kBlock.
template <typename T>
__attribute__((always_inline)) inline void noise_block(uint64_t seed, uint64_t offset, int64_t first, int64_t pairs,
                                                       T* __restrict__ e_re, T* __restrict__ e_im) {
  uint32_t bits[4][kBlock];
  for (int64_t j = 0; j < pairs; ++j) {
    uint32_t r[4];
    reparam_math::philox(seed, offset, static_cast<uint64_t>(first + j), r);
    for (int k = 0; k < 4; ++k) bits[k][j] = r[k];
  }
  for (int64_t j = 0; j < pairs; ++j) {
    reparam_math::box_muller<T>(bits[0][j], bits[1][j], e_re[2 * j], e_im[2 * j]);
    reparam_math::box_muller<T>(bits[2][j], bits[3][j], e_re[2 * j + 1], e_im[2 * j + 1]);
  }
}

// f(i, count, e_re, e_im) for the elements [i0, i1) in spans of at most 2 kBlock, with their
// noise e_re[j] + i e_im[j] for element i + j. A span that starts at an odd element skips the
// first half of its pair's block.
template <typename T, typename F>
__attribute__((always_inline)) inline void for_each_noise_span(uint64_t seed, uint64_t offset, int64_t i0, int64_t i1,
                                                               const F& f) {
  T e_re[2 * kBlock], e_im[2 * kBlock];
  for (int64_t p0 = i0 / 2; 2 * p0 < i1; p0 += kBlock) {
    const int64_t pairs = std::min(kBlock, (i1 + 1) / 2 - p0);
    noise_block<T>(seed, offset, p0, pairs, e_re, e_im);
    const int64_t first = std::max(i0, 2 * p0), skip = first - 2 * p0;
    f(first, std::min(2 * pairs, i1 - 2 * p0) - skip, e_re + skip, e_im + skip);
  }
}

// The same over the elements of the pairs [begin, end) below n.
template <typename T, typename F>
__attribute__((always_inline)) inline void for_each_noise_block(uint64_t seed, uint64_t offset, int64_t begin,
                                                                int64_t end, int64_t n, const F& f) {
  for_each_noise_span<T>(seed, offset, 2 * begin, std::min(2 * end, n), f);
}

// out[i] = mu[i] + e_i sigma(s2[i]) for the elements of pairs [begin, end).
template <typename T>
__attribute__((always_inline)) inline void forward_range(uint64_t seed, uint64_t offset, int64_t begin, int64_t end,
                                                         int64_t n, const T* __restrict__ mu, const T* __restrict__ s2,
                                                         T* __restrict__ out) {
  for_each_noise_block<T>(seed, offset, begin, end, n, [&](int64_t i0, int64_t count, const T* e_re, const T* e_im) {
    for (int64_t j = 0; j < count; ++j) {
      const int64_t i = i0 + j;
      reparam_math::forward(mu[2 * i], mu[2 * i + 1], s2[i], e_re[j], e_im[j], out[2 * i], out[2 * i + 1]);
    }
  });
}

// grad_s2[i] from g[i], s2[i] and the same noise.
template <typename T>
__attribute__((always_inline)) inline void backward_range(uint64_t seed, uint64_t offset, int64_t begin, int64_t end,
                                                          int64_t n, const T* __restrict__ g, const T* __restrict__ s2,
                                                          T* __restrict__ grad_s2) {
  for_each_noise_block<T>(seed, offset, begin, end, n, [&](int64_t i0, int64_t count, const T* e_re, const T* e_im) {
    for (int64_t j = 0; j < count; ++j) {
      const int64_t i = i0 + j;
      grad_s2[i] = reparam_math::grad_s2(g[2 * i], g[2 * i + 1], s2[i], e_re[j], e_im[j]);
    }
  });
}

// One row of the fused Gaussian layers' recombination: out[c] = (q0 - q1) + i (q2 - q0 - q1) +
// b[c] + e sigma(s2[c]) for the n columns of noise elements [i0, i0 + n); b == nullptr: no bias.
// out: interleaved complex (re at 2c, im at 2c + 1), the layout of every output these ops write.
template <typename T>
__attribute__((always_inline)) inline void combine_noisy_row(uint64_t seed, uint64_t offset, int64_t i0, int64_t n,
                                                             const T* __restrict__ q0, const T* __restrict__ q1,
                                                             const T* __restrict__ q2, const T* __restrict__ b_re,
                                                             const T* __restrict__ b_im, const T* __restrict__ s2,
                                                             T* __restrict__ out) {
  for_each_noise_span<T>(seed, offset, i0, i0 + n, [&](int64_t i, int64_t count, const T* e_re, const T* e_im) {
    const int64_t c0 = i - i0;
    for (int64_t j = 0; j < count; ++j) {
      const int64_t c = c0 + j;
      const T a = q0[c], b = q1[c];
      T mu_re = a - b, mu_im = q2[c] - a - b;
      if (b_re != nullptr) mu_re += b_re[c], mu_im += b_im[c];
      reparam_math::forward(mu_re, mu_im, s2[c], e_re[j], e_im[j], out[2 * c], out[2 * c + 1]);
    }
  });
}

// Entry points compiled per vector ISA: AVX-512, AVX2 and the x86-64 baseline (cpu/vectorize.h).
#define CPLXFAST_REPARAM_RANGES(T, SUFFIX)                                                                    \
  CPLXFAST_VECTOR_CLONES void forward_##SUFFIX(uint64_t seed, uint64_t offset, int64_t b, int64_t e, int64_t n, \
                                               const T* mu, const T* s2, T* out) {                            \
    forward_range<T>(seed, offset, b, e, n, mu, s2, out);                                                      \
  }                                                                                                           \
  CPLXFAST_VECTOR_CLONES void backward_##SUFFIX(uint64_t seed, uint64_t offset, int64_t b, int64_t e, int64_t n, \
                                                const T* g, const T* s2, T* grad_s2) {                         \
    backward_range<T>(seed, offset, b, e, n, g, s2, grad_s2);                                                  \
  }                                                                                                           \
  CPLXFAST_VECTOR_CLONES void combine_noisy_##SUFFIX(uint64_t seed, uint64_t offset, int64_t i0, int64_t n,    \
                                                     const T* q0, const T* q1, const T* q2, const T* b_re,     \
                                                     const T* b_im, const T* s2, T* out) {                     \
    combine_noisy_row<T>(seed, offset, i0, n, q0, q1, q2, b_re, b_im, s2, out);                                \
  }
CPLXFAST_REPARAM_RANGES(float, f32)
CPLXFAST_REPARAM_RANGES(double, f64)
#undef CPLXFAST_REPARAM_RANGES

template <typename T>
struct Ranges;
template <>
struct Ranges<float> {
  static constexpr auto forward = &forward_f32;
  static constexpr auto backward = &backward_f32;
  static constexpr auto combine_noisy = &combine_noisy_f32;
};
template <>
struct Ranges<double> {
  static constexpr auto forward = &forward_f64;
  static constexpr auto backward = &backward_f64;
  static constexpr auto combine_noisy = &combine_noisy_f64;
};

uint64_t draw_seed() {
  auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(c10::nullopt, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);  // see ATen's note on using random generators
  return gen->random64();
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
    at::parallel_for(0, (P.numel + 1) / 2, kGrain, [&](int64_t begin, int64_t end) {
      Ranges<T>::forward(seed, offset, begin, end, P.numel, m, v, o);
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
    at::parallel_for(0, (P.numel + 1) / 2, kGrain, [&](int64_t begin, int64_t end) {
      Ranges<T>::backward(seed, offset, begin, end, P.numel, g, v, gs);
    });
  });
  return grad_s2;
}

// The fused Gaussian layers' noise (common/reparam.h).
void draw_state(const at::Tensor& rng) {
  rng.data_ptr<int64_t>()[0] = static_cast<int64_t>(draw_seed());
  rng.data_ptr<int64_t>()[1] = 0;
}

void combine_noisy(at::TensorList products, const ComplexPair& bias, const NoiseSource& noise, const ComplexPair& out) {
  TORCH_INTERNAL_ASSERT(products.size() == 3);
  const int64_t rows = out.re.size(0), cols = out.re.size(1);
  const uint64_t seed = static_cast<uint64_t>(noise.rng.data_ptr<int64_t>()[0]);
  const uint64_t offset = static_cast<uint64_t>(noise.rng.data_ptr<int64_t>()[1]);
  AT_DISPATCH_FLOATING_TYPES(noise.s2.scalar_type(), "cplxfast_combine_noisy_cpu", [&] {
    using T = scalar_t;
    const View<T> re = view_of<T>(out.re), im = view_of<T>(out.im), v = view_of<T>(noise.s2);
    TORCH_INTERNAL_ASSERT(re.col_stride == 2 && im.data == re.data + 1 && re.row_stride == im.row_stride &&
                          re.sign == 1 && im.sign == 1 && (v.col_stride == 1 || cols <= 1) &&
                          !out.scale.defined());
    const bool has_bias = bias.re.defined();
    const at::Tensor b_re = has_bias ? bias.re.resolve_neg().contiguous() : at::Tensor();
    const at::Tensor b_im = has_bias ? bias.im.resolve_neg().contiguous() : at::Tensor();
    const T* br = has_bias ? b_re.data_ptr<T>() : nullptr;
    const T* bi = has_bias ? b_im.data_ptr<T>() : nullptr;
    const PlanePtrs<T> q(products);
    for_each_row_block(rows, cols, [&](int64_t r, int64_t c0, int64_t c1) {
      Ranges<T>::combine_noisy(seed, offset, noise.first + r * v.row_stride + c0, c1 - c0, q.at(0, r, c0),
                               q.at(1, r, c0), q.at(2, r, c0), br ? br + c0 : nullptr, bi ? bi + c0 : nullptr,
                               v.data + r * v.row_stride + c0, re.data + r * re.row_stride + 2 * c0);
    });
  });
}

}  // namespace

const NoiseKernels& noise_kernels() {
  static const NoiseKernels k{&draw_state, &combine_noisy};
  return k;
}

TORCH_LIBRARY_IMPL(cplxfast, CPU, m) {
  m.impl("gaussian_reparam", &gaussian_reparam);
  m.impl("gaussian_reparam_backward", &gaussian_reparam_backward);
}

}  // namespace cplxfast::cpu
