// Elementwise CPU loops are written branch-free so that GCC vectorises them, and their entry
// points are compiled twice, for AVX2 and for the x86-64 baseline, with the right one picked at
// load time (target_clones): full-width vectors on current CPUs, and still runs on any x86-64.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPLXFAST_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CPLXFAST_VECTOR_CLONES
#endif
