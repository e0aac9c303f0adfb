// Walking a dense tensor in memory order by "runs" of elements that share a per-channel index:
// element i belongs to index (i / inner) % T. With inner > 1, runs are stretches of constant
// index (for_each_constant_run); with inner == 1 (the index varies fastest, e.g. channels_last),
// the elements are rows of T whose index rises by one per element, walked as one (RowCursor).
#pragma once
#include <algorithm>
#include <cstdint>
#include <new>
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
// and then at least a vector's more (extended_stride), cyclically, so that a vector's values are one
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

// Extended rows start on a cache line and their stride (their width and then at least a cache
// line's values, which is at least a vector's) is whole cache lines, so that when the width is whole
// cache lines too (C = 64 channels: 2 C floats) every vector read at `at` is one cache line, not
// two. Without that, batch norm's channels_last backward apply, nine coefficient vectors per data
// vector, ran slower in 64-byte vectors than in 32-byte ones.
constexpr int64_t kCacheLine = 64;

template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kCacheLine))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(kCacheLine)); }
  bool operator==(const CacheLineAllocator&) const { return true; }
  bool operator!=(const CacheLineAllocator&) const { return false; }
};

template <typename T>
using RowArray = std::vector<T, CacheLineAllocator<T>>;

template <typename T>
int64_t extended_stride(int64_t width) {
  constexpr int64_t kLine = kCacheLine / sizeof(T);
  return (width + 2 * kLine - 1) / kLine * kLine;
}

template <typename T>
RowArray<T> extended_row(const T* values, int64_t width) {
  RowArray<T> ext(extended_stride<T>(width));
  for (size_t k = 0; k < ext.size(); ++k) ext[k] = values[k % width];
  return ext;
}

template <typename T>
void fold_extension(T* ext, int64_t width) {
  for (int64_t k = width; k < extended_stride<T>(width); ++k) ext[k % width] += ext[k];
}

}  // namespace cplxfast::cpu
