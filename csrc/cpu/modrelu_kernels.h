// modReLU's vector kernels on CPU, templated on the vector width kBytes (cpu/vectorize.h's
// ComplexChunk). No include guard: modrelu.cpp includes this twice, into namespaces `narrow` (as
// it is: the baseline and AVX2 versions of its entry points) and `wide` (compiled for AVX-512 by a
// pragma around the include: its entry points' AVX-512 versions, 64-byte vectors). GCC compiles a
// template for the target of its definition, and a 64-byte vector comparison defined for the
// baseline, inlined into an AVX-512 function, came out lane by lane (scalar compares and inserts:
// 2x slower than 32-byte vectors), so the AVX-512 set has definitions of its own.
// Included after <immintrin.h>, <type_traits>, common/modrelu.h, cpu/runs.h and cpu/vectorize.h,
// inside cplxfast::cpu.

// 1 / |z| from |z|^2. In 64-byte float vectors (AVX-512): vrsqrt14ps (14 bits) and one Newton
// step (within about an ulp of the rounded 1 / |z|; the products are ordered so that none over- or
// underflows for |z|^2 in float's range): no square root or division. Those two share one unit,
// which on an Intel AVX-512 Xeon set the pace of both kernels (one thread, in L2: forward
// 0.50-0.60 -> 0.36-0.45 ns per element, backward 0.88-0.99 -> 0.71-0.80; bench/RESULTS.md). At
// |z| = 0 it gives 0 * inf = NaN. Otherwise (double, and the 32-byte kernels, whose AVX2 and
// baseline clones have no 14-bit estimate): the reciprocal of the rounded square root, inf at 0.
template <typename T, int kBytes>
__attribute__((always_inline)) inline VecOf<T, kBytes> inverse_modulus(VecOf<T, kBytes> r2) {
  if constexpr (std::is_same_v<T, float> && kBytes == 64) {
    // The zero-masked form with every lane set: the plain one's undefined pass-through operand
    // draws GCC 12's maybe-uninitialized warning.
    const VecOf<T, kBytes> y = _mm512_maskz_rsqrt14_ps(__mmask16(0xFFFF), r2);
    return y * (T(1.5) - T(0.5) * ((r2 * y) * y));
  } else {
    return T(1) / sqrt_vec<T, kBytes>(r2);
  }
}

// Elementwise min(a, b) and max(a, b) as x86's vminps / vmaxps: b where a is NaN or both are
// zeros, as `a < b ? a : b` and `a > b ? a : b`, to which they fall back in 32-byte vectors (whose
// baseline clone has no such instruction). GCC lowers those ternaries to a compare and a blend: two
// ops in 64-byte vectors, where the intrinsics take one. Here, not in cpu/vectorize.h, for the
// AVX-512 target of `wide` (an intrinsic does not inline into a function of another target); the
// zero-masked forms with every lane set, as in inverse_modulus.
template <typename T, int kBytes>
__attribute__((always_inline)) inline VecOf<T, kBytes> min_vec(VecOf<T, kBytes> a, VecOf<T, kBytes> b) {
  if constexpr (kBytes == 64 && std::is_same_v<T, float>) return _mm512_maskz_min_ps(__mmask16(0xFFFF), a, b);
  else if constexpr (kBytes == 64) return _mm512_maskz_min_pd(__mmask8(0xFF), a, b);
  else return a < b ? a : b;
}

template <typename T, int kBytes>
__attribute__((always_inline)) inline VecOf<T, kBytes> max_vec(VecOf<T, kBytes> a, VecOf<T, kBytes> b) {
  if constexpr (kBytes == 64 && std::is_same_v<T, float>) return _mm512_maskz_max_ps(__mmask16(0xFFFF), a, b);
  else if constexpr (kBytes == 64) return _mm512_maskz_max_pd(__mmask8(0xFF), a, b);
  else return a > b ? a : b;
}

// 1 / eps, the bound of 1 / |z| for |z| > eps: tested as 1 / |z| < 1 / eps, no |z| is computed,
// and NaN or inf at z = 0 (inverse_modulus) is not below it. Infinity for the polar form (eps = 0),
// where the test is 1 / |z| finite, z != 0. Where 1 / eps rounds, the test differs from |z| > eps
// within an ulp of |z| = eps, as a rounded |z| would.
template <bool kPolar, typename T>
__attribute__((always_inline)) inline T inverse_eps(T eps) {
  return kPolar ? std::numeric_limits<T>::infinity() : T(1) / eps;
}

// 1 / max(|z|, eps) from 1 / |z|, large = 1 / |z| < inv_eps and inv_eps = inverse_eps(eps); the
// polar form takes |z| = 0 as 1 (forward_chunk). For eps > 0, min(1 / |z|, 1 / eps), in one op;
// the forward needs no `large` then, and GCC drops its compare.
template <typename T, int kBytes, bool kPolar, typename Mask>
__attribute__((always_inline)) inline VecOf<T, kBytes> inverse_floored(VecOf<T, kBytes> inv_r, Mask large, T inv_eps) {
  const VecOf<T, kBytes> zero{};
  if constexpr (kPolar) return large ? inv_r : zero + T(1);
  else return min_vec<T, kBytes>(inv_r, zero + inv_eps);
}

// nonfinite += t * 0: 0 while every lane's t is finite, NaN for good after one is not (one fused op).
template <typename T, int kBytes>
__attribute__((always_inline)) inline void add_probe(VecOf<T, kBytes> t, VecOf<T, kBytes>& nonfinite) {
  nonfinite = t * VecOf<T, kBytes>{} + nonfinite;
}

// The maths of modrelu_math::forward / grads on a chunk of elements in registers (split parts,
// cpu/vectorize.h's ComplexChunk), branch-free, for finite values
// only: special values (NaN or infinity in z, g or tau, a modulus whose square overflows, 1 / eps
// out of range) are left to modrelu_math, element by element, in the runs where they occur
// (forward_run, backward_run). Each chunk adds a probe t to `nonfinite` (add_probe); t sums the
// values through which a special value reaches a result: |z|^2, s = 1 - tau / max(|z|, eps) and,
// backward, Re(g conj(z)). Getting every special value right in every lane would cost the
// backward's vector maths about 10 ops per chunk; the probe costs 3.
// kPolar: eps == 0 (torchcvnn's polar form), where z = 0 is a case of its own (its modulus is taken
// as 1 there, so that s stays finite and the probe quiet); a template parameter so that the other
// loops carry none of it.
template <typename T, int kBytes, bool kPolar>
__attribute__((always_inline)) inline void forward_chunk(VecOf<T, kBytes> re, VecOf<T, kBytes> im, VecOf<T, kBytes> th,
                                                         T eps, VecOf<T, kBytes>& out_re, VecOf<T, kBytes>& out_im,
                                                         VecOf<T, kBytes>& nonfinite) {
  using V = VecOf<T, kBytes>;
  const V zero{};
  const V r2 = re * re + im * im;
  const V inv_r = inverse_modulus<T, kBytes>(r2);
  const T inv_eps = inverse_eps<kPolar>(eps);
  const auto large = inv_r < inv_eps;  // |z| > eps
  const V s = T(1) - th * inverse_floored<T, kBytes, kPolar>(inv_r, large, inv_eps);
  const V f = max_vec<T, kBytes>(s, zero);
  out_re = re * f;
  out_im = im * f;
  if constexpr (kPolar) {  // z = 0: relu(-tau) + 0i
    const V o = -th;
    out_re = large ? out_re : (o > zero ? o : zero);
    out_im = large ? out_im : zero;
  }
  add_probe<T, kBytes>(r2 + s, nonfinite);
}

// grad_z (gz_re, gz_im) and the threshold's element gradients, negated (minus_dt), as
// modrelu_math::grads: grad_z = a g + b (Im u, -Re u), u = z / max(|z|, eps); |z| > eps: a = 1,
// b = (tau / |z|) Im(g conj(u)); |z| <= eps: a = s, b = 0; both 0 where s <= 0. In u, not z / |z|^3
// (nor Im(g conj(z)) / |z|, which overflows or loses digits for large or tiny |g| |z|), so that it
// stays in range for tiny and huge |z| (eps = 0). Re(g conj(z)), which dt divides by max(|z|, eps)
// as modrelu_math does, comes first, off the chain through 1 / |z|. The threshold's gradient
// leaves negated, as a zero-masked product: on AVX-512 a negation and a masked move were two more
// ops on the two vector ports that set this loop's pace (bench/RESULTS.md).
template <typename T, int kBytes, bool kPolar>
__attribute__((always_inline)) inline void backward_chunk(VecOf<T, kBytes> re, VecOf<T, kBytes> im, VecOf<T, kBytes> gr,
                                                          VecOf<T, kBytes> gi, VecOf<T, kBytes> th, T eps,
                                                          VecOf<T, kBytes>& gz_re, VecOf<T, kBytes>& gz_im,
                                                          VecOf<T, kBytes>& minus_dt, VecOf<T, kBytes>& nonfinite) {
  using V = VecOf<T, kBytes>;
  const V zero{}, one = zero + T(1);
  const V dot = gr * re + gi * im;  // Re(g conj(z))
  const V r2 = re * re + im * im;
  const V inv_r = inverse_modulus<T, kBytes>(r2);
  const T inv_eps = inverse_eps<kPolar>(eps);
  const auto large = inv_r < inv_eps;  // |z| > eps; polar form: z != 0
  const V inv_m = inverse_floored<T, kBytes, kPolar>(inv_r, large, inv_eps);
  const V k = th * inv_m;
  const V s = one - k;
  const auto live = kPolar ? (s > zero) & large : s > zero;
  const V a = live ? (large ? one : s) : zero;
  const V ur = re * inv_m, ui = im * inv_m;
  const V b = (live & large) ? k * (gi * ur - gr * ui) : zero;
  gz_re = a * gr + b * ui;
  gz_im = a * gi - b * ur;
  minus_dt = live ? dot * inv_m : zero;                                 // Re(g conj(z)) / max(|z|, eps)
  if constexpr (kPolar) minus_dt = (large | (th >= zero)) ? minus_dt : gr;  // z = 0: out = relu(-tau)
  // dot is not finite where g or z is not (inf * 0 is NaN), and past float's range where |g| |z| is:
  // a run redone exactly that did not need it.
  add_probe<T, kBytes>(r2 + s + dot, nonfinite);
}

// modrelu_math on elements [0, m) of a chunk (th: the chunk's thresholds, in lane order): the
// runs where a special value occurred. backward_exact returns the thresholds' element gradients,
// negated as backward_chunk's, in lane order, 0 in lanes m.. . Inlined like every helper that
// takes a vector by value (cpu/vectorize.h): an out-of-line copy would be compiled for the
// baseline, whose ABI passes 32-byte vectors in memory, not in the registers the AVX clones pass
// them in.
template <typename T, int kBytes>
__attribute__((always_inline)) inline void forward_exact(const T* z, T* out, int64_t m, VecOf<T, kBytes> th, T eps) {
  const VecOf<T, kBytes> tau = in_natural_order<T, kBytes>(th);
  for (int64_t e = 0; e < m; ++e)
    modrelu_math::forward(z[2 * e], z[2 * e + 1], tau[e], eps, out[2 * e], out[2 * e + 1]);
}

template <typename T, int kBytes>
__attribute__((always_inline)) inline VecOf<T, kBytes> backward_exact(const T* z, const T* g, T* gz, int64_t m,
                                                                      VecOf<T, kBytes> th, T eps) {
  const VecOf<T, kBytes> tau = in_natural_order<T, kBytes>(th);
  VecOf<T, kBytes> dt{};
  for (int64_t e = 0; e < m; ++e) {
    modrelu_math::grads(z[2 * e], z[2 * e + 1], tau[e], eps, g[2 * e], g[2 * e + 1], gz[2 * e], gz[2 * e + 1], dt[e]);
  }
  return in_lane_order<T, kBytes>(-dt);
}

// Walks n elements by chunks, calling chunk(z, aux, out, m) with pointers to a chunk's interleaved
// values and its count m of real elements: kSize, or, for the last chunk when n is not a multiple
// of kSize, m < kSize and pointers to copies padded with zeros. aux is a second interleaved input
// (the backward's g) or null. Each chunk asks for its lines 4 KB ahead (prefetch_ahead).
template <typename T, int kBytes, typename Chunk>
__attribute__((always_inline)) inline void for_each_chunk(const T* __restrict__ z, const T* __restrict__ aux,
                                                          T* __restrict__ out, int64_t n, const Chunk& chunk) {
  constexpr int L = ComplexChunk<T, kBytes>::kSize;
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    prefetch_ahead<false>(z + 2 * j, 2 * L * sizeof(T));
    if (aux != nullptr) prefetch_ahead<false>(aux + 2 * j, 2 * L * sizeof(T));
    prefetch_ahead<true>(out + 2 * j, 2 * L * sizeof(T));
    chunk(z + 2 * j, aux == nullptr ? nullptr : aux + 2 * j, out + 2 * j, int64_t(L));
  }
  if (j == n) return;
  alignas(32) T z_pad[2 * L] = {}, aux_pad[2 * L] = {}, out_pad[2 * L];
  std::copy(z + 2 * j, z + 2 * n, z_pad);
  if (aux != nullptr) std::copy(aux + 2 * j, aux + 2 * n, aux_pad);
  chunk(z_pad, aux_pad, out_pad, n - j);
  std::copy(out_pad, out_pad + 2 * (n - j), out + 2 * j);
}

// Whether a run's probe sum (forward_chunk, backward_chunk) saw a special value.
template <typename T, int kBytes>
__attribute__((always_inline)) inline bool saw_special_value(VecOf<T, kBytes> nonfinite) {
  return !(vec_sum<T, kBytes>(nonfinite) == 0);
}

// Elements per float sum of the threshold gradient of a constant-threshold run (each lane sums
// kSumBlock / kSize of them before they go to double).
constexpr int64_t kSumBlock = 512;

// The thresholds of a run's chunks, in lane order, and where their gradients go; the chunks come
// in memory order.
//
// RunThreshold: one threshold for the run (inner > 1); its gradient summed in the lanes of a
// vector, moved to double every kSumBlock elements. Both kinds take the element gradients negated
// (sub_grad(minus_dt), as backward_chunk gives them).
template <typename T, int kBytes>
struct RunThreshold {
  VecOf<T, kBytes> tau;
  VecOf<T, kBytes> sum{};
  double total = 0;
  int64_t chunks = 0;

  explicit RunThreshold(const T* t) : tau(VecOf<T, kBytes>{} + *t) {}
  // Back to the run's first chunk, with no gradient added (a run redone element by element).
  void restart() {
    sum = VecOf<T, kBytes>{};
    total = 0;
    chunks = 0;
  }
  CPLXFAST_INLINE VecOf<T, kBytes> thresholds() const { return tau; }
  CPLXFAST_INLINE void sub_grad(VecOf<T, kBytes> minus_dt) {
    sum -= minus_dt;
    if (++chunks % (kSumBlock / ComplexChunk<T, kBytes>::kSize) == 0) {
      total += vec_sum<T, kBytes>(sum);
      sum = VecOf<T, kBytes>{};
    }
  }
  void next() {}
  double grad_sum() const { return total + vec_sum<T, kBytes>(sum); }
};

// RowThresholds: one threshold per channel, the channel varying fastest (channels_last per-channel
// thresholds, or thresholds [F] on [B, F]: inner == 1): element i of the run is in channel
// (first + i) % C, a RowCursor over rows of C (cpu/runs.h). tau_ext is the C thresholds as an
// extended row (cpu/runs.h: at least a cache line's values more, whatever the chunk's width); dt_ext is laid out the
// same way and takes the gradients (folded into C sums by the caller, who zeroes it before each run). One walk over the
// whole run, not one per row: rows shorter than a chunk (C < 8 or 16 for float) would otherwise be all padding.
template <typename T, int kBytes>
struct RowThresholds {
  const T* tau_ext;
  T* dt_ext;
  RowCursor first, pos;

  RowThresholds(const T* tau_ext, T* dt_ext, int64_t C, int64_t first_element)
      : tau_ext(tau_ext), dt_ext(dt_ext), first(C, ComplexChunk<T, kBytes>::kSize, first_element), pos(first) {}
  void restart() {
    pos = first;
    if (dt_ext != nullptr) std::fill(dt_ext, dt_ext + extended_stride<T>(pos.width), T(0));
  }
  CPLXFAST_INLINE VecOf<T, kBytes> thresholds() const {
    return in_lane_order<T, kBytes>(load_vec<T, kBytes>(tau_ext + pos.at));
  }
  CPLXFAST_INLINE void sub_grad(VecOf<T, kBytes> minus_dt) {
    store_vec<T, kBytes>(dt_ext + pos.at,
                         load_vec<T, kBytes>(dt_ext + pos.at) - in_natural_order<T, kBytes>(minus_dt));
  }
  void next() { pos.next(); }
};

// A run where a special value occurred is done again, element by element (forward_exact).
template <typename T, int kBytes, bool kPolar, typename Thresholds>
__attribute__((always_inline)) inline void forward_run(const T* in, T* out, int64_t n, Thresholds tau, T eps) {
  VecOf<T, kBytes> nonfinite{};
  for_each_chunk<T, kBytes>(in, nullptr, out, n, [&](const T* z, const T*, T* o, int64_t) CPLXFAST_INLINE {
    VecOf<T, kBytes> re, im, out_re, out_im;
    load_split<T, kBytes>(z, re, im);
    forward_chunk<T, kBytes, kPolar>(re, im, tau.thresholds(), eps, out_re, out_im, nonfinite);
    merge_store<T, kBytes>(out_re, out_im, o);
    tau.next();
  });
  if (!saw_special_value<T, kBytes>(nonfinite)) return;
  tau.restart();
  for_each_chunk<T, kBytes>(in, nullptr, out, n, [&](const T* z, const T*, T* o, int64_t m) CPLXFAST_INLINE {
    forward_exact<T, kBytes>(z, o, m, tau.thresholds(), eps);
    tau.next();
  });
}

// grad_z of n elements; the threshold's element gradients go to tau.sub_grad, negated. A run where
// a special value occurred is done again, element by element (backward_exact), its threshold
// gradients from scratch. A last chunk's padded lanes (z = g = 0) take 0 from them, or NaN where
// 1 / eps overflows, which the probe sees (s is not finite there): the run is then redone, from
// its real elements only.
template <typename T, int kBytes, bool kPolar, typename Thresholds>
__attribute__((always_inline)) inline void backward_run(const T* in, const T* g, T* gz, int64_t n, Thresholds& tau,
                                                        T eps) {
  VecOf<T, kBytes> nonfinite{};
  for_each_chunk<T, kBytes>(in, g, gz, n, [&](const T* z, const T* gp, T* o, int64_t) CPLXFAST_INLINE {
    VecOf<T, kBytes> re, im, gr, gi, gz_re, gz_im, minus_dt;
    load_split<T, kBytes>(z, re, im);
    load_split<T, kBytes>(gp, gr, gi);
    backward_chunk<T, kBytes, kPolar>(re, im, gr, gi, tau.thresholds(), eps, gz_re, gz_im, minus_dt, nonfinite);
    merge_store<T, kBytes>(gz_re, gz_im, o);
    tau.sub_grad(minus_dt);
    tau.next();
  });
  if (!saw_special_value<T, kBytes>(nonfinite)) return;
  tau.restart();
  for_each_chunk<T, kBytes>(in, g, gz, n, [&](const T* z, const T* gp, T* o, int64_t m) CPLXFAST_INLINE {
    tau.sub_grad(backward_exact<T, kBytes>(z, gp, o, m, tau.thresholds(), eps));
    tau.next();
  });
}
