// modReLU on CPU: one pass over z forward; one pass over (z, g) backward that also reduces the
// threshold gradient (per-thread partial sums, no input-sized temporary). Elements are walked
// in z's memory order in segments of constant threshold, so the inner loops carry no index
// arithmetic and vectorise.
#include <algorithm>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/modrelu.h"

namespace cplxfast::cpu {
namespace {

constexpr int64_t kGrain = 16384;  // complex elements per task

// Calls body(begin, end, t) for the segments of [begin, end) of constant block index t.
template <typename F>
inline void for_each_segment(int64_t begin, int64_t end, int64_t inner, int64_t T, const F& body) {
  for (int64_t i = begin; i < end;) {
    const int64_t row = i / inner;
    const int64_t stop = std::min(end, (row + 1) * inner);
    body(i, stop, row % T);
    i = stop;
  }
}

at::Tensor modrelu(const at::Tensor& z, const at::Tensor& threshold) {
  const ModReLULayout L = plan_modrelu("cplxfast.modrelu", z, threshold);
  at::Tensor out = empty_like_dense(L);
  if (L.numel == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(L.tau_block.scalar_type(), "cplxfast_modrelu_cpu", [&] {
    using T = scalar_t;
    const T* in = reinterpret_cast<const T*>(L.z.data_ptr());
    T* o = reinterpret_cast<T*>(out.data_ptr());
    const T* tau = L.tau_block.data_ptr<T>();
    at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
      for_each_segment(begin, end, L.inner, L.T, [&](int64_t b, int64_t e, int64_t t) {
        const T th = tau[t];
        for (int64_t j = b; j < e; ++j) {
          const T re = in[2 * j], im = in[2 * j + 1];
          const T f = modrelu_math::scale(re, im, th);
          o[2 * j] = re * f;
          o[2 * j + 1] = im * f;
        }
      });
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> modrelu_backward(const at::Tensor& grad, const at::Tensor& z,
                                                    const at::Tensor& threshold, std::array<bool, 2> mask) {
  const char* op = "cplxfast.modrelu_backward";
  const ModReLULayout L = plan_modrelu(op, z, threshold);
  TORCH_CHECK(grad.sizes() == z.sizes(), op, ": grad has shape ", grad.sizes(), " but the input has shape ", z.sizes());
  TORCH_CHECK(grad.scalar_type() == z.scalar_type(), op, ": grad has dtype ", grad.scalar_type(), " but the input ", z.scalar_type());
  const at::Tensor g = same_layout_as(grad, L);
  at::Tensor grad_z = mask[0] ? empty_like_dense(L) : at::Tensor();
  at::Tensor grad_tau;
  if (L.numel == 0) {
    if (mask[1]) grad_tau = at::zeros_like(threshold, at::MemoryFormat::Contiguous);
    return {grad_z, grad_tau};
  }
  AT_DISPATCH_FLOATING_TYPES(L.tau_block.scalar_type(), "cplxfast_modrelu_backward_cpu", [&] {
    using T = scalar_t;
    using Acc = at::acc_type<T, /*is_cuda=*/false>;  // double
    const T* in = reinterpret_cast<const T*>(L.z.data_ptr());
    const T* gp = reinterpret_cast<const T*>(g.data_ptr());
    T* gz = mask[0] ? reinterpret_cast<T*>(grad_z.data_ptr()) : nullptr;
    const T* tau = L.tau_block.data_ptr<T>();
    const int threads = at::get_num_threads();
    std::vector<Acc> partial(mask[1] ? static_cast<size_t>(threads) * L.T : 0, Acc(0));
    at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
      Acc* sums = mask[1] ? partial.data() + static_cast<size_t>(at::get_thread_num()) * L.T : nullptr;
      for_each_segment(begin, end, L.inner, L.T, [&](int64_t b, int64_t e, int64_t t) {
        const T th = tau[t];
        Acc seg = 0;
        for (int64_t j = b; j < e; ++j) {
          T dre, dim, dtau;
          modrelu_math::grads(in[2 * j], in[2 * j + 1], th, gp[2 * j], gp[2 * j + 1], dre, dim, dtau);
          if (gz != nullptr) {
            gz[2 * j] = dre;
            gz[2 * j + 1] = dim;
          }
          seg += dtau;
        }
        if (sums != nullptr) sums[t] += seg;
      });
    });
    if (mask[1]) {
      at::Tensor block = at::zeros({L.T}, L.tau_block.options().dtype(c10::CppTypeToScalarType<Acc>::value));
      Acc* bp = block.data_ptr<Acc>();
      for (int th = 0; th < threads; ++th) {
        for (int64_t t = 0; t < L.T; ++t) bp[t] += partial[static_cast<size_t>(th) * L.T + t];
      }
      grad_tau = grad_threshold_from_block(L, block, threshold);
    }
  });
  return {grad_z, grad_tau};
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CPU, m) {
  m.impl("modrelu", &modrelu);
  m.impl("modrelu_backward", &modrelu_backward);
}

}  // namespace cplxfast::cpu
