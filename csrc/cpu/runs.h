// Walking a dense tensor in memory order by "runs" of elements that share a per-channel index:
// element i belongs to index (i / inner) % T. With inner > 1, runs are stretches of constant
// index; with inner == 1 (the index varies fastest, e.g. channels_last), runs are pieces of
// rows of T elements whose index rises by one per element.
#pragma once
#include <algorithm>
#include <cstdint>

namespace cplxfast::cpu {

// Calls rising(b, e, t0) for the pieces of rows of T elements in [begin, end): element i has
// index t0 + (i - b), t0 = b % T.
template <typename Rising>
__attribute__((always_inline)) inline void for_each_row_piece(int64_t begin, int64_t end, int64_t T,
                                                              const Rising& rising) {
  // Only the first piece can start inside a row (one division, not one per row).
  for (int64_t i = begin, t = begin % T; i < end; t = 0) {
    const int64_t stop = std::min(end, i + (T - t));
    rising(i, stop, t);
    i = stop;
  }
}

// Calls constant(b, e, t) for the runs of one index t in [begin, end) (inner > 1).
template <typename Constant>
inline void for_each_constant_run(int64_t begin, int64_t end, int64_t inner, int64_t T, const Constant& constant) {
  for (int64_t i = begin; i < end;) {
    const int64_t row = i / inner;
    const int64_t stop = std::min(end, (row + 1) * inner);
    constant(i, stop, row % T);
    i = stop;
  }
}

}  // namespace cplxfast::cpu
