// Per-channel sums on CUDA without atomics, shared by batch norm (statistics, gradient sums) and
// modReLU (the threshold gradient).
//
// A dense tensor read in memory order is seen as [outer, C, inner]: element idx belongs to
// channel (idx / inner) % C. Each block reduces K double values per element for one channel (or
// a tile of 32 channels) over one slice ("split") of the channel's elements and writes its
// partial sums to partials[split][c][K]; the splits are then summed in a fixed order. Fixed
// slices and fixed reduction trees make the result bitwise reproducible from run to run (as
// torch.use_deterministic_algorithms asks) at no cost: there is no atomic to save.
//
// Two shapes of the same reduction, so that reads stay coalesced:
//   inner > 1 (channels outer, e.g. contiguous [B, C, H, W]): a block of kThreads per (channel,
//     split) walks the channel's outer x inner elements (runs of `inner` adjacent elements);
//   inner == 1 and C >= 16 (channels innermost: [B, C], channels_last): a 32 x 8 block per (32-channel tile,
//     split); a warp reads 32 adjacent channels of one row, each thread keeps its channel's sums
//     in registers and the 8 rows of the block are summed in shared memory.
//
// An Op supplies the per-element work:
//   using State = ...;                                      // per-channel constants
//   __device__ State state(int64_t c) const;
//   __device__ void operator()(const State&, int64_t idx, double (&acc)[K]) const;
// (it may also write element outputs: modReLU's backward writes grad_z in the same pass).
#pragma once
#include <algorithm>
#include <cstdint>

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "cuda/kernel_utils.cuh"

namespace cplxfast::cuda {

constexpr int kTileChannels = 32, kTileRows = 8;  // the channels-inner block

// acc summed over the block (blockDim.x threads, a multiple of 32); the result is in thread 0.
template <int K>
__device__ __forceinline__ void block_sum(double (&acc)[K]) {
  __shared__ double warp_sums[K][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int k = 0; k < K; ++k) {
    for (int offset = 16; offset > 0; offset >>= 1) acc[k] += __shfl_down_sync(0xffffffffu, acc[k], offset);
    if (lane == 0) warp_sums[k][warp] = acc[k];
  }
  __syncthreads();
  if (warp == 0) {
    for (int k = 0; k < K; ++k) {
      acc[k] = lane < warps ? warp_sums[k][lane] : 0.0;
      for (int offset = 16; offset > 0; offset >>= 1) acc[k] += __shfl_down_sync(0xffffffffu, acc[k], offset);
    }
  }
}

template <int K, typename I, typename Op>
__global__ void channel_partials_outer_kernel(Op op, I C, I inner, I per_channel, double* __restrict__ partials) {
  const int64_t c = blockIdx.x;
  const auto state = op.state(c);
  double acc[K] = {};
  for (I j = blockIdx.y * I(blockDim.x) + threadIdx.x; j < per_channel; j += I(gridDim.y) * blockDim.x) {
    const I o = j / inner, i = j - o * inner;
    op(state, int64_t((o * C + I(c)) * inner + i), acc);
  }
  block_sum<K>(acc);
  if (threadIdx.x == 0) {
    for (int k = 0; k < K; ++k) partials[(blockIdx.y * int64_t(C) + c) * K + k] = acc[k];
  }
}

template <int K, typename I, typename Op>
__global__ void channel_partials_inner_kernel(Op op, I outer, I C, double* __restrict__ partials) {
  const int64_t c = int64_t(blockIdx.x) * kTileChannels + threadIdx.x;
  double acc[K] = {};
  if (c < int64_t(C)) {
    const auto state = op.state(c);
    for (I o = blockIdx.y * I(kTileRows) + threadIdx.y; o < outer; o += I(gridDim.y) * kTileRows) {
      op(state, int64_t(o * C) + c, acc);
    }
  }
  __shared__ double rows[K][kTileRows][kTileChannels];
  for (int k = 0; k < K; ++k) rows[k][threadIdx.y][threadIdx.x] = acc[k];
  __syncthreads();
  if (threadIdx.y == 0 && c < int64_t(C)) {
    for (int k = 0; k < K; ++k) {
      double s = 0;
      for (int y = 0; y < kTileRows; ++y) s += rows[k][y][threadIdx.x];
      partials[(blockIdx.y * int64_t(C) + c) * K + k] = s;
    }
  }
}

// out[e] = sum over splits s, in order, of partials[s][e], for e < n (n = C * K). (A template
// only so that this header can be included by several .cu files.)
template <typename T>
__global__ void sum_splits_kernel(const T* __restrict__ partials, int64_t splits, int64_t n, T* __restrict__ out) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    T s = 0;
    for (int64_t p = 0; p < splits; ++p) s += partials[p * n + e];
    out[e] = s;
  }
}

// Splits per channel (or tile) so that the grid fills the GPU (about 8 blocks per SM), each
// thread handling at least 4 elements, within the grid's y limit.
inline int64_t reduction_splits(int64_t slots, int64_t elements_per_slot, int64_t threads) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t want = std::max<int64_t>(1, (sms * 8 + slots - 1) / std::max<int64_t>(slots, 1));
  const int64_t useful = std::max<int64_t>(1, elements_per_slot / (4 * threads));
  return std::min<int64_t>({want, useful, 65535});
}

// Partial sums [splits, C, K] (float64, on the current device) of op over the [outer, C, inner]
// elements. C >= 1 and outer * C * inner > 0.
template <int K, typename Op>
at::Tensor channel_partials(const Op& op, int64_t outer, int64_t C, int64_t inner, const at::TensorOptions& opts) {
  const int64_t numel = outer * C * inner;
  auto stream = at::cuda::getCurrentCUDAStream();
  at::Tensor partials;
  with_index_type(numel, [&](auto index) {
    using I = decltype(index);
    // Fewer than 16 channels would leave most of a 32-channel tile idle: the channels-outer
    // kernel reads them with stride C instead (still within a few cache lines per warp).
    if (inner == 1 && C >= 16) {
      const int64_t tiles = (C + kTileChannels - 1) / kTileChannels;
      const int64_t splits = reduction_splits(tiles, outer, kTileRows);
      partials = at::empty({splits, C, K}, opts.dtype(at::kDouble));
      channel_partials_inner_kernel<K, I, Op>
          <<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(splits)), dim3(kTileChannels, kTileRows), 0,
             stream>>>(op, I(outer), I(C), partials.data_ptr<double>());
    } else {
      const int64_t splits = reduction_splits(C, outer * inner, kThreads);
      partials = at::empty({splits, C, K}, opts.dtype(at::kDouble));
      channel_partials_outer_kernel<K, I, Op><<<dim3(static_cast<unsigned>(C), static_cast<unsigned>(splits)), kThreads,
                                                0, stream>>>(op, I(C), I(inner), I(outer * inner),
                                                             partials.data_ptr<double>());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return partials;
}

// [C, K] sums of the partials [splits, C, K].
inline at::Tensor sum_splits(const at::Tensor& partials) {
  const int64_t splits = partials.size(0), n = partials.size(1) * partials.size(2);
  at::Tensor out = at::empty({partials.size(1), partials.size(2)}, partials.options());
  sum_splits_kernel<double><<<grid_for(n, 4), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      partials.data_ptr<double>(), splits, n, out.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace cplxfast::cuda
