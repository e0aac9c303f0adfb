// Walking a dense tensor in memory order by "runs" of elements that share a per-channel index:
// element i belongs to index (i / inner) % T. With inner > 1, runs are stretches of constant
// index (for_each_constant_run); with inner == 1 (the index varies fastest, e.g. channels_last),
// the elements are rows of T whose index rises by one per element, walked as one (RowCursor).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace cplxfast::cpu {

// Calls constant(b, e, t) for the runs of one index t in [begin, end) (inner > 1).
template <typename Constant>
__attribute__((always_inline)) inline void for_each_constant_run(int64_t begin, int64_t end, int64_t inner, int64_t T,
                                                                 const Constant& constant) {
  for (int64_t i = begin; i < end;) {
    const int64_t row = i / inner;
    const int64_t stop = std::min(end, (row + 1) * inner);
    constant(i, stop, row % T);
    i = stop;
  }
}

// Rows walked a vector at a time (inner == 1: the channel varies fastest), as one walk over a
// task's elements rather than one loop per row: a vector can hold the end of one row and the start
// of the next (or several rows, when a row is shorter than a vector). RowCursor keeps the position
// `at` in the row of `width` values (0 <= at < width) and steps it by `step` values (a vector's),
// wrapping. Per-channel arrays read at `at` are extended rows (extended_row): their width values
// and then `extra` (at least a vector) more, cyclically, so that a vector's values are one
// unit-stride load wherever it starts; sums added at `at` land in the extension too, and
// fold_extension adds them back to their own values. A loop per row paid its setup (and GCC's
// overlap checks) per row: roughly 30-45% of batch norm's channels_last passes at C = 64, from the
// generated loops' instruction counts.
struct RowCursor {
  int64_t width, step, at;
  RowCursor(int64_t width, int64_t step, int64_t first) : width(width), step(step % width), at(first % width) {}
  void next() {
    at += step;
    if (at >= width) at -= width;
  }
};

template <typename T>
std::vector<T> extended_row(const T* values, int64_t width, int64_t extra) {
  std::vector<T> ext(width + extra);
  for (size_t k = 0; k < ext.size(); ++k) ext[k] = values[k % width];
  return ext;
}

template <typename T>
void fold_extension(T* ext, int64_t width, int64_t extra) {
  for (int64_t k = width; k < width + extra; ++k) ext[k % width] += ext[k];
}

}  // namespace cplxfast::cpu
