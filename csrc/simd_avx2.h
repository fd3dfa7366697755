// The AVX2+FMA building blocks that the AVX2 files share (isa_avx2.cpp, lanes_avx2.cpp):
// include it from files compiled with -mavx2 -mfma only. Everything is in an unnamed
// namespace inside lenet_fast::avx2, so each of those files has its own copy and no AVX2
// code reaches the baseline files through an inline function (tests/system/test_build.py).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels.h"

namespace lenet_fast {
namespace avx2 {
namespace {

// mask with the first n (0..8) lanes set
inline __m256i tail_mask(int64_t n) {
    alignas(32) static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                              0,  0,  0,  0,  0,  0,  0,  0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8 - n));
}

// Keeps v in a register: without it gcc folds a vector that several FMAs use into each of
// them as a memory operand, loading it once per FMA (dw_flat_block: 12 loads per 10 FMAs,
// a third of them split across cache lines, instead of 7).
inline void in_register(__m256& v) {
#if defined(__GNUC__) || defined(__clang__)
    __asm__("" : "+x"(v));
#else
    (void)v;
#endif
}

// The horizontal sums of v[0..7] as the lanes of one vector, lane j = hsum(v[j]) to the
// bit: the same three additions in the same order (low half + high half, then lanes 0+2
// and 1+3, then those two), for eight vectors at once: 21 operations where eight hsums
// take 40.
inline __m256 hsum8(const __m256* v) {
    __m256 q[4];  // q[i] = [low + high of v[i] | low + high of v[i + 4]]
    for (int i = 0; i < 4; ++i)
        q[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[i], v[i + 4], 0x20),
                             _mm256_permute2f128_ps(v[i], v[i + 4], 0x31));
    // per half: [q0+q2 of v[i], of v[i+1], q1+q3 of v[i], of v[i+1]]
    const __m256 u01 =
        _mm256_add_ps(_mm256_unpacklo_ps(q[0], q[1]), _mm256_unpackhi_ps(q[0], q[1]));
    const __m256 u23 =
        _mm256_add_ps(_mm256_unpacklo_ps(q[2], q[3]), _mm256_unpackhi_ps(q[2], q[3]));
    const __m256d d01 = _mm256_castps_pd(u01), d23 = _mm256_castps_pd(u23);
    return _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(d01, d23)),
                         _mm256_castpd_ps(_mm256_unpackhi_pd(d01, d23)));
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// ---- scaled tanh -----------------------------------------------------------------------
// tanh as a [13/6] rational function of x on [-7.9053, 7.9053] (the coefficients Eigen
// uses for float tanh), x itself below 4e-4, +-1 beyond the clamp. Max error against
// float64 tanh is a few float32 ulp (tests/test_kernels.py). min/max take the input as the
// second operand so that NaN propagates.
inline __m256 tanh8(__m256 a) {
    const __m256 clamp = _mm256_set1_ps(7.90531110763549805f);
    const __m256 x =
        _mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), clamp), _mm256_min_ps(clamp, a));
    const __m256 absx = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a);
    const __m256 tiny = _mm256_cmp_ps(absx, _mm256_set1_ps(0.0004f), _CMP_LT_OQ);
    const __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = _mm256_fmadd_ps(x2, _mm256_set1_ps(-2.76076847742355e-16f),
                               _mm256_set1_ps(2.00018790482477e-13f));
    p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-8.60467152213735e-11f));
    p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(5.12229709037114e-08f));
    p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(1.48572235717979e-05f));
    p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(6.37261928875436e-04f));
    p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(4.89352455891786e-03f));
    p = _mm256_mul_ps(x, p);
    __m256 q = _mm256_fmadd_ps(x2, _mm256_set1_ps(1.19825839466702e-06f),
                               _mm256_set1_ps(1.18534705686654e-04f));
    q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(2.26843463243900e-03f));
    q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(4.89352518554385e-03f));
    return _mm256_blendv_ps(_mm256_div_ps(p, q), x, tiny);
}

// A tanh(S a), lane by lane: what squash() computes for every element.
inline __m256 squash8(__m256 a) {
    return _mm256_mul_ps(_mm256_set1_ps(kSquashA),
                         tanh8(_mm256_mul_ps(_mm256_set1_ps(kSquashS), a)));
}

}  // namespace
}  // namespace avx2
}  // namespace lenet_fast
