// Walking a dense tensor in memory order by "runs" of elements that share a per-channel index:
// element i belongs to index (i / inner) % T. With inner > 1, runs are stretches of constant
// index; with inner == 1 (the index varies fastest, e.g. channels_last), runs are pieces of
// rows of T elements whose index rises by one per element.
#pragma once
#include <algorithm>
#include <cstdint>

namespace cplxfast::cpu {

// Calls constant(begin, end, t) for runs of one index t, or rising(begin, end, t0) for runs
// where element i has index t0 + (i - begin).
template <typename Constant, typename Rising>
inline void for_each_run(int64_t begin, int64_t end, int64_t inner, int64_t T, const Constant& constant,
                         const Rising& rising) {
  for (int64_t i = begin; i < end;) {
    if (inner == 1) {
      const int64_t t = i % T;
      const int64_t stop = std::min(end, i + (T - t));
      rising(i, stop, t);
      i = stop;
    } else {
      const int64_t row = i / inner;
      const int64_t stop = std::min(end, (row + 1) * inner);
      constant(i, stop, row % T);
      i = stop;
    }
  }
}

}  // namespace cplxfast::cpu
