// AVX2+FMA micro-kernels: the functions of isa_scalar.cpp, 8 floats at a time.
// This file alone is compiled with -mavx2 -mfma (CMakeLists.txt); everything in it lives in
// namespace lenet_fast::avx2 with internal linkage, so no AVX2 code can leak into baseline
// code through a shared inline function (tests/test_build.py checks the binary for it).
//
// Tails: convolution rows use masked loads and stores (vmaskmov never touches the masked-off
// lanes, so no read past an array and no NaN from a neighbouring row); the element-wise
// kernels finish with the scalar loop. FMA only through intrinsics; no fast-math.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "isa.h"
#include "kernels.h"
#include "simd_avx2.h"

namespace lenet_fast {
namespace avx2 {
namespace {

// ---- convolution: a block of NR output rows by NV vectors (8*NV columns) --------------
// TAIL: the last vector of each row is partial (mask m). KS: the kernel width when known at
// compile time (5, LeNet's), 0 for any width. Each output element sums bias, then the pairs,
// rows and columns of the kernel in order, whatever NR and NV: the blocking changes only how
// many independent FMA chains run at once (NR*NV; a narrow row such as C3's 10 columns has
// NV = 2, and one FMA chain per vector would leave the FMA units waiting on their latency).
template <int NV, bool TAIL, int KS, int NR>
inline void conv_block(float* y, const PlaneArgs& a, int64_t i, int64_t j0, int64_t Wo, __m256i m) {
    const int64_t S = KS ? KS : a.S;
    __m256 acc[NR][NV];
    for (int q = 0; q < NR; ++q)
        for (int v = 0; v < NV; ++v) acc[q][v] = _mm256_set1_ps(a.bias);
    for (int64_t p = 0; p < a.npairs; ++p) {
        const float* x = a.x + a.cidx[p] * a.H * a.W + i * a.W + j0;
        const float* w = a.w + a.widx[p] * a.R * S;
        for (int64_t r = 0; r < a.R; ++r, x += a.W, w += S) {
            for (int64_t s = 0; s < S; ++s) {
                const __m256 wv = _mm256_broadcast_ss(w + s);
                for (int q = 0; q < NR; ++q)
                    for (int v = 0; v < NV; ++v) {
                        const float* xq = x + q * a.W + s + 8 * v;
                        const __m256 xv =
                            (TAIL && v == NV - 1) ? _mm256_maskload_ps(xq, m) : _mm256_loadu_ps(xq);
                        acc[q][v] = _mm256_fmadd_ps(wv, xv, acc[q][v]);
                    }
            }
        }
    }
    for (int q = 0; q < NR; ++q)
        for (int v = 0; v < NV; ++v) {
            float* yq = y + (i + q) * Wo + j0 + 8 * v;
            if (TAIL && v == NV - 1)
                _mm256_maskstore_ps(yq, m, acc[q][v]);
            else
                _mm256_storeu_ps(yq, acc[q][v]);
        }
}

// All output rows of the column block j0 .. j0 + 8*NV - 1, in blocks of at most NRMAX rows
// (NRMAX*NV, 8 to 10 accumulators), the blocks as even as possible: 10 rows as 5 + 5, not
// 4 + 4 + 2, whose last block would again wait on the FMA latency.
template <int NV, bool TAIL, int KS, int NR>
inline void conv_block_n(int64_t nr, float* y, const PlaneArgs& a, int64_t i, int64_t j0,
                         int64_t Wo, __m256i m) {
    if constexpr (NR > 1) {
        if (nr < NR) return conv_block_n<NV, TAIL, KS, NR - 1>(nr, y, a, i, j0, Wo, m);
    }
    conv_block<NV, TAIL, KS, NR>(y, a, i, j0, Wo, m);
}

template <int NV, bool TAIL, int KS>
void conv_cols(float* y, const PlaneArgs& a, int64_t Ho, int64_t Wo, int64_t j0, __m256i m) {
    constexpr int NRMAX = NV == 1 ? 8 : (NV == 2 ? 5 : (NV == 3 ? 3 : 2));
    const int64_t blocks = (Ho + NRMAX - 1) / NRMAX, base = Ho / blocks, extra = Ho % blocks;
    int64_t i = 0;
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t nr = base + (b < extra ? 1 : 0);
        conv_block_n<NV, TAIL, KS, NRMAX>(nr, y, a, i, j0, Wo, m);
        i += nr;
    }
}

template <int KS>
void conv_rows(float* y, const PlaneArgs& a) {
    const int64_t Ho = a.H - a.R + 1, Wo = a.W - a.S + 1;
    int64_t j0 = 0;
    for (; j0 + 32 <= Wo; j0 += 32) conv_cols<4, false, KS>(y, a, Ho, Wo, j0, __m256i());
    const int64_t rest = Wo - j0;
    if (rest == 0) return;
    const int64_t nv = (rest + 7) / 8, last = rest - 8 * (nv - 1);
    const __m256i m = tail_mask(last);
    const bool tail = last != 8;
    switch (nv * 2 + (tail ? 1 : 0)) {
        case 2: conv_cols<1, false, KS>(y, a, Ho, Wo, j0, m); break;
        case 3: conv_cols<1, true, KS>(y, a, Ho, Wo, j0, m); break;
        case 4: conv_cols<2, false, KS>(y, a, Ho, Wo, j0, m); break;
        case 5: conv_cols<2, true, KS>(y, a, Ho, Wo, j0, m); break;
        case 6: conv_cols<3, false, KS>(y, a, Ho, Wo, j0, m); break;
        case 7: conv_cols<3, true, KS>(y, a, Ho, Wo, j0, m); break;
        default: conv_cols<4, true, KS>(y, a, Ho, Wo, j0, m); break;  // 25..31 columns
    }
}

void conv_plane(float* y, const PlaneArgs& a) {
    if (a.S == 5)
        conv_rows<5>(y, a);
    else
        conv_rows<0>(y, a);
}

// ---- convolution, flat layout, K kernels per input load --------------------------------
// KB planes by NV vectors of 8 consecutive f: KB*NV accumulators (at most 4 x 3: with the
// NV input vectors and one broadcast weight, the 16 ymm registers). Per kernel tap, NV loads
// of x and KB broadcasts feed KB*NV FMAs (conv_plane: one load per FMA). TAIL: the last
// vector is partial (mask m); vmaskmov reads nothing past the plane.
// KS: the kernel's side when it is square and known at compile time (5, LeNet's), else 0.
// With both loops' trip counts known the compiler keeps the accumulators in registers
// across the kernel rows (a runtime R made it store them to the stack after every row).
template <int KB, int NV, bool TAIL, int KS>
inline void acc_flat_block(float* const* y, const float* const* w, const float* x, int64_t f0,
                           int64_t W, int64_t R_, int64_t S_, __m256i m, const float* bias) {
    const int64_t R = KS ? KS : R_, S = KS ? KS : S_;
    __m256 acc[KB][NV];
    for (int k = 0; k < KB; ++k)
        for (int v = 0; v < NV; ++v) {
            const float* yk = y[k] + f0 + 8 * v;
            acc[k][v] = bias                    ? _mm256_set1_ps(bias[k])
                        : (TAIL && v == NV - 1) ? _mm256_maskload_ps(yk, m)
                                                : _mm256_loadu_ps(yk);
        }
    for (int64_t r = 0; r < R; ++r) {
        const float* xr = x + f0 + r * W;
        for (int64_t s = 0; s < S; ++s) {
            __m256 xv[NV];
            for (int v = 0; v < NV; ++v)
                xv[v] = (TAIL && v == NV - 1) ? _mm256_maskload_ps(xr + s + 8 * v, m)
                                              : _mm256_loadu_ps(xr + s + 8 * v);
            for (int k = 0; k < KB; ++k) {
                const __m256 wv = _mm256_broadcast_ss(w[k] + r * S + s);
                for (int v = 0; v < NV; ++v) acc[k][v] = _mm256_fmadd_ps(wv, xv[v], acc[k][v]);
            }
        }
    }
    for (int k = 0; k < KB; ++k)
        for (int v = 0; v < NV; ++v) {
            float* yk = y[k] + f0 + 8 * v;
            if (TAIL && v == NV - 1)
                _mm256_maskstore_ps(yk, m, acc[k][v]);
            else
                _mm256_storeu_ps(yk, acc[k][v]);
        }
}

template <int KB, int KS>
void acc_flat_planes(float* const* y, const float* const* w, const float* x, int64_t W, int64_t L,
                     int64_t R, int64_t S, const float* bias) {
    int64_t f0 = 0;
    for (; f0 + 24 <= L; f0 += 24)
        acc_flat_block<KB, 3, false, KS>(y, w, x, f0, W, R, S, __m256i(), bias);
    const int64_t rest = L - f0;
    if (rest == 0) return;
    const int64_t nv = (rest + 7) / 8, last = rest - 8 * (nv - 1);
    const __m256i m = tail_mask(last);
    switch (nv * 2 + (last != 8 ? 1 : 0)) {
        case 2: acc_flat_block<KB, 1, false, KS>(y, w, x, f0, W, R, S, m, bias); break;
        case 3: acc_flat_block<KB, 1, true, KS>(y, w, x, f0, W, R, S, m, bias); break;
        case 4: acc_flat_block<KB, 2, false, KS>(y, w, x, f0, W, R, S, m, bias); break;
        case 5: acc_flat_block<KB, 2, true, KS>(y, w, x, f0, W, R, S, m, bias); break;
        default: acc_flat_block<KB, 3, true, KS>(y, w, x, f0, W, R, S, m, bias); break;  // 17..23
    }
}

template <int KS>
void acc_flat_ks(float* const* y, const float* const* w, int64_t K, const float* x, int64_t W,
                 int64_t L, int64_t R, int64_t S, const float* bias) {
    // blocks of at most 4 planes, as even as possible: 10 as 4 + 3 + 3 and 6 as 3 + 3, not
    // 4 + 4 + 2 and 4 + 2 (a block of 2 has half the FMAs per load of x)
    const int64_t blocks = (K + 3) / 4;
    for (int64_t b = 0, k = 0; b < blocks; ++b) {
        const int64_t kb = K / blocks + (b < K % blocks ? 1 : 0);
        const float* bk = bias ? bias + k : nullptr;
        switch (kb) {
            case 4: acc_flat_planes<4, KS>(y + k, w + k, x, W, L, R, S, bk); break;
            case 3: acc_flat_planes<3, KS>(y + k, w + k, x, W, L, R, S, bk); break;
            case 2: acc_flat_planes<2, KS>(y + k, w + k, x, W, L, R, S, bk); break;
            default: acc_flat_planes<1, KS>(y + k, w + k, x, W, L, R, S, bk); break;
        }
        k += kb;
    }
}

void conv_acc_flat(float* const* y, const float* const* w, int64_t K, const float* x, int64_t W,
                   int64_t L, int64_t R, int64_t S, const float* bias) {
    if (R == 5 && S == 5)
        acc_flat_ks<5>(y, w, K, x, W, L, R, S, bias);
    else
        acc_flat_ks<0>(y, w, K, x, W, L, R, S, bias);
}

// ---- convolution weight gradient ------------------------------------------------------
// dw[r,s] += sum_n sum_ij dy[i,j] x[i+r,j+s]: per r, one accumulator per s (KS of them when
// the width is known, else one s at a time), vectors along j.
template <int KS>
void conv_dw_rows(float* dw, const float* x, int64_t x_stride, const float* dy, int64_t dy_stride,
                  int64_t N, int64_t H, int64_t W, int64_t R) {
    const int64_t Wo = W - KS + 1, Ho = H - R + 1;
    const int64_t full = Wo / 8 * 8;
    const __m256i m = tail_mask(Wo - full);
    for (int64_t r = 0; r < R; ++r) {
        double total[KS] = {};  // float within an image, double across the batch
        for (int64_t n = 0; n < N; ++n) {
            __m256 acc[KS];
            for (int s = 0; s < KS; ++s) acc[s] = _mm256_setzero_ps();
            const float* xn = x + n * x_stride + r * W;
            const float* dyn = dy + n * dy_stride;
            for (int64_t i = 0; i < Ho; ++i, xn += W, dyn += Wo) {
                int64_t j = 0;
                for (; j < full; j += 8) {
                    const __m256 g = _mm256_loadu_ps(dyn + j);
                    for (int s = 0; s < KS; ++s)
                        acc[s] = _mm256_fmadd_ps(g, _mm256_loadu_ps(xn + j + s), acc[s]);
                }
                if (j < Wo) {
                    const __m256 g = _mm256_maskload_ps(dyn + j, m);
                    for (int s = 0; s < KS; ++s)
                        acc[s] = _mm256_fmadd_ps(g, _mm256_maskload_ps(xn + j + s, m), acc[s]);
                }
            }
            for (int s = 0; s < KS; ++s) total[s] += hsum(acc[s]);
        }
        for (int s = 0; s < KS; ++s) dw[r * KS + s] += static_cast<float>(total[s]);
    }
}

void conv_dw_any(float* dw, const float* x, int64_t x_stride, const float* dy, int64_t dy_stride,
                 int64_t N, int64_t H, int64_t W, int64_t R, int64_t S) {
    const int64_t Wo = W - S + 1, Ho = H - R + 1;
    const int64_t full = Wo / 8 * 8;
    const __m256i m = tail_mask(Wo - full);
    for (int64_t r = 0; r < R; ++r)
        for (int64_t s = 0; s < S; ++s) {
            double total = 0.0;
            for (int64_t n = 0; n < N; ++n) {
                __m256 acc = _mm256_setzero_ps();
                const float* xn = x + n * x_stride + r * W + s;
                const float* dyn = dy + n * dy_stride;
                for (int64_t i = 0; i < Ho; ++i, xn += W, dyn += Wo) {
                    int64_t j = 0;
                    for (; j < full; j += 8)
                        acc =
                            _mm256_fmadd_ps(_mm256_loadu_ps(dyn + j), _mm256_loadu_ps(xn + j), acc);
                    if (j < Wo)
                        acc = _mm256_fmadd_ps(_mm256_maskload_ps(dyn + j, m),
                                              _mm256_maskload_ps(xn + j, m), acc);
                }
                total += hsum(acc);
            }
            dw[r * S + s] += static_cast<float>(total);
        }
}

void conv_dw_plane(float* dw, const float* x, int64_t x_stride, const float* dy, int64_t dy_stride,
                   int64_t N, int64_t H, int64_t W, int64_t R, int64_t S) {
    if (S == 5)
        conv_dw_rows<5>(dw, x, x_stride, dy, dy_stride, N, H, W, R);
    else
        conv_dw_any(dw, x, x_stride, dy, dy_stride, N, H, W, R, S);
}

// ---- full connection -------------------------------------------------------------------
// Blocks of NR rows of the batch by four outputs: NR*4 accumulators, each load of a weight
// vector shared by the NR rows and each load of an input vector by the four outputs (C5's
// 192 KB of weights come from L2 once per block instead of once per row). Every output sums
// its products in the same order whatever NR: the bits do not depend on the batch.
template <int NR>
void linear_block(float* y, const float* x, const float* w, const float* b, int64_t I, int64_t O,
                  __m256i m) {
    const int64_t full = I / 8 * 8;
    int64_t o = 0;
    for (; o + 4 <= O; o += 4) {
        const float* w0 = w + o * I;
        __m256 acc[NR][4];
        for (int r = 0; r < NR; ++r)
            for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i < full; i += 8) {
            __m256 xv[NR];
            for (int r = 0; r < NR; ++r) xv[r] = _mm256_loadu_ps(x + r * I + i);
            for (int q = 0; q < 4; ++q) {
                const __m256 wv = _mm256_loadu_ps(w0 + q * I + i);
                for (int r = 0; r < NR; ++r) acc[r][q] = _mm256_fmadd_ps(xv[r], wv, acc[r][q]);
            }
        }
        if (i < I) {
            __m256 xv[NR];
            for (int r = 0; r < NR; ++r) xv[r] = _mm256_maskload_ps(x + r * I + i, m);
            for (int q = 0; q < 4; ++q) {
                const __m256 wv = _mm256_maskload_ps(w0 + q * I + i, m);
                for (int r = 0; r < NR; ++r) acc[r][q] = _mm256_fmadd_ps(xv[r], wv, acc[r][q]);
            }
        }
        for (int r = 0; r < NR; ++r)
            for (int q = 0; q < 4; ++q) y[r * O + o + q] = hsum(acc[r][q]) + (b ? b[o + q] : 0.0f);
    }
    for (; o < O; ++o) {
        const float* wo = w + o * I;
        for (int r = 0; r < NR; ++r) {
            const float* xn = x + r * I;
            __m256 acc = _mm256_setzero_ps();
            int64_t i = 0;
            for (; i < full; i += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(xn + i), _mm256_loadu_ps(wo + i), acc);
            if (i < I)
                acc = _mm256_fmadd_ps(_mm256_maskload_ps(xn + i, m), _mm256_maskload_ps(wo + i, m),
                                      acc);
            y[r * O + o] = hsum(acc) + (b ? b[o] : 0.0f);
        }
    }
}

void linear_rows(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t I,
                 int64_t O) {
    const __m256i m = tail_mask(I - I / 8 * 8);
    int64_t n = 0;
    for (; n + 3 <= N; n += 3) linear_block<3>(y + n * O, x + n * I, w, b, I, O, m);
    if (N - n == 2) linear_block<2>(y + n * O, x + n * I, w, b, I, O, m);
    if (N - n == 1) linear_block<1>(y + n * O, x + n * I, w, b, I, O, m);
}

void axpy(float* y, float alpha, const float* x, int64_t n) {
    const __m256 av = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] = std::fma(alpha, x[i], y[i]);
}

void axpy_diff(float* y, float alpha, const float* a, const float* b, int64_t n) {
    const __m256 av = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, d, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; ++i) y[i] = std::fma(alpha, a[i] - b[i], y[i]);
}

// ---- 2x2 subsampling -------------------------------------------------------------------
// Sums of 8 horizontal pairs of (row0 + row1), in order, from 16 consecutive columns.
inline __m256 pair_sums(const float* r0, const float* r1) {
    const __m256 lo = _mm256_add_ps(_mm256_loadu_ps(r0), _mm256_loadu_ps(r1));
    const __m256 hi = _mm256_add_ps(_mm256_loadu_ps(r0 + 8), _mm256_loadu_ps(r1 + 8));
    // hadd gives [lo01 lo23 hi01 hi23 | lo45 lo67 hi45 hi67]; reorder the 64-bit pairs.
    const __m256 h = _mm256_hadd_ps(lo, hi);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(h), 0xD8));
}

void subsample_plane(float* y, const float* x, float coef, float bias, int64_t H, int64_t W) {
    const int64_t Ho = H / 2, Wo = W / 2;
    const __m256 cv = _mm256_set1_ps(coef), bv = _mm256_set1_ps(bias);
    for (int64_t i = 0; i < Ho; ++i) {
        const float* r0 = x + 2 * i * W;
        const float* r1 = r0 + W;
        float* yr = y + i * Wo;
        int64_t j = 0;
        for (; j + 8 <= Wo; j += 8)
            _mm256_storeu_ps(yr + j, _mm256_fmadd_ps(cv, pair_sums(r0 + 2 * j, r1 + 2 * j), bv));
        for (; j < Wo; ++j)
            yr[j] = std::fma(coef, (r0[2 * j] + r1[2 * j]) + (r0[2 * j + 1] + r1[2 * j + 1]), bias);
    }
}

float subsample_backward_plane(float* dx, const float* x, const float* dy, float coef, int64_t H,
                               int64_t W) {
    const int64_t Ho = H / 2, Wo = W / 2;
    const __m256 cv = _mm256_set1_ps(coef);
    __m256 acc = _mm256_setzero_ps();
    float tail = 0.0f;
    for (int64_t i = 0; i < Ho; ++i) {
        const float* r0 = x + 2 * i * W;
        const float* r1 = r0 + W;
        float* d0 = dx + 2 * i * W;
        float* d1 = d0 + W;
        const float* g = dy + i * Wo;
        int64_t j = 0;
        for (; j + 8 <= Wo; j += 8) {
            const __m256 gv = _mm256_loadu_ps(g + j);
            acc = _mm256_fmadd_ps(gv, pair_sums(r0 + 2 * j, r1 + 2 * j), acc);
            const __m256 v = _mm256_mul_ps(cv, gv);
            const __m256 lo = _mm256_unpacklo_ps(v, v);  // v0 v0 v1 v1 | v4 v4 v5 v5
            const __m256 hi = _mm256_unpackhi_ps(v, v);  // v2 v2 v3 v3 | v6 v6 v7 v7
            const __m256 a = _mm256_permute2f128_ps(lo, hi, 0x20);
            const __m256 b = _mm256_permute2f128_ps(lo, hi, 0x31);
            _mm256_storeu_ps(d0 + 2 * j, a);
            _mm256_storeu_ps(d0 + 2 * j + 8, b);
            _mm256_storeu_ps(d1 + 2 * j, a);
            _mm256_storeu_ps(d1 + 2 * j + 8, b);
        }
        for (; j < Wo; ++j) {
            const int64_t o = 2 * j;
            tail = std::fma(g[j], (r0[o] + r0[o + 1]) + (r1[o] + r1[o + 1]), tail);
            d0[o] = d0[o + 1] = d1[o] = d1[o + 1] = coef * g[j];
        }
    }
    return hsum(acc) + tail;
}

// ---- scaled tanh (tanh8: simd_avx2.h) --------------------------------------------------
void squash(float* y, const float* a, int64_t n) {
    const __m256 A = _mm256_set1_ps(kSquashA), S = _mm256_set1_ps(kSquashS);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(A, tanh8(_mm256_mul_ps(S, _mm256_loadu_ps(a + i)))));
    if (i < n) {  // the tail through the same formula, so every element agrees
        const __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(
            y + i, m, _mm256_mul_ps(A, tanh8(_mm256_mul_ps(S, _mm256_maskload_ps(a + i, m)))));
    }
}

void squash_backward(float* da, const float* y, const float* dy, int64_t n) {
    constexpr float k = kSquashS / kSquashA, A2 = kSquashA * kSquashA;
    const __m256 kv = _mm256_set1_ps(k), A2v = _mm256_set1_ps(A2);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 yv = _mm256_loadu_ps(y + i);
        const __m256 d = _mm256_mul_ps(kv, _mm256_sub_ps(A2v, _mm256_mul_ps(yv, yv)));
        _mm256_storeu_ps(da + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), d));
    }
    for (; i < n; ++i) da[i] = dy[i] * (k * (A2 - y[i] * y[i]));
}

// ---- Euclidean RBF ---------------------------------------------------------------------
void rbf_rows(float* y, const float* x, const float* c, int64_t N, int64_t M, int64_t J) {
    const int64_t full = J / 8 * 8;
    const __m256i m = tail_mask(J - full);
    for (int64_t n = 0; n < N; ++n) {
        const float* xn = x + n * J;
        for (int64_t i = 0; i < M; ++i) {
            const float* ci = c + i * J;
            __m256 acc = _mm256_setzero_ps();
            int64_t j = 0;
            for (; j < full; j += 8) {
                const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xn + j), _mm256_loadu_ps(ci + j));
                acc = _mm256_fmadd_ps(d, d, acc);
            }
            if (j < J) {
                const __m256 d =
                    _mm256_sub_ps(_mm256_maskload_ps(xn + j, m), _mm256_maskload_ps(ci + j, m));
                acc = _mm256_fmadd_ps(d, d, acc);
            }
            y[n * M + i] = hsum(acc);
        }
    }
}

// ---- SDLM update of one row of a full connection at batch 1 ----------------------------
// w -= step (d x) with a multiply, a multiply and a subtraction, like the scalar loop (no
// FMA: numpy's roundings of w -= step * g with g = d x).
void outer_update(float* w, const float* step, const float* x, float d, int64_t n) {
    const __m256 dv = _mm256_set1_ps(d);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_mul_ps(dv, _mm256_loadu_ps(x + i));
        const __m256 wv = _mm256_loadu_ps(w + i);
        _mm256_storeu_ps(w + i, _mm256_sub_ps(wv, _mm256_mul_ps(_mm256_loadu_ps(step + i), g)));
    }
    for (; i < n; ++i) w[i] -= step[i] * (d * x[i]);
}

// ---- convolution weight gradient, flat layout ------------------------------------------
// KB kernels by NS columns s of the kernel row r: KB*NS accumulators along f (at most
// 2 x 5, with the KB gradient vectors and one input vector: 13 ymm registers). Per vector of
// f: KB loads of dy, NS of x (shifted by s), KB*NS FMAs. TAIL: the last vector is partial.
template <int KB, int NS>
inline void dw_flat_block(float* const* dw, const float* const* dy, const float* x, int64_t W,
                          int64_t L, int64_t r, int64_t s0, int64_t S) {
    __m256 acc[KB][NS];
    for (int k = 0; k < KB; ++k)
        for (int s = 0; s < NS; ++s) acc[k][s] = _mm256_setzero_ps();
    const float* xr = x + r * W + s0;
    const int64_t full = L / 8 * 8;
    int64_t f = 0;
    for (; f < full; f += 8) {
        __m256 g[KB];
        for (int k = 0; k < KB; ++k) g[k] = _mm256_loadu_ps(dy[k] + f);
        for (int s = 0; s < NS; ++s) {
            __m256 xv = _mm256_loadu_ps(xr + f + s);
            in_register(xv);
            for (int k = 0; k < KB; ++k) acc[k][s] = _mm256_fmadd_ps(g[k], xv, acc[k][s]);
        }
    }
    if (f < L) {
        const __m256i m = tail_mask(L - f);
        __m256 g[KB];
        for (int k = 0; k < KB; ++k) g[k] = _mm256_maskload_ps(dy[k] + f, m);
        for (int s = 0; s < NS; ++s) {
            const __m256 xv = _mm256_maskload_ps(xr + f + s, m);
            for (int k = 0; k < KB; ++k) acc[k][s] = _mm256_fmadd_ps(g[k], xv, acc[k][s]);
        }
    }
    // the KB*NS horizontal sums: eight at a time (hsum8, hsum's bits), the rest one by one
    constexpr int T = KB * NS;
    const __m256* a = &acc[0][0];
    alignas(32) float sums[T + 7];
    int t = 0;
    for (; t + 8 <= T; t += 8) _mm256_store_ps(sums + t, hsum8(a + t));
    for (; t < T; ++t) sums[t] = hsum(a[t]);
    for (int k = 0; k < KB; ++k)
        for (int q = 0; q < NS; ++q) dw[k][r * S + s0 + q] = sums[k * NS + q];
}

template <int KB>
void dw_flat_kernels(float* const* dw, const float* const* dy, const float* x, int64_t W, int64_t L,
                     int64_t R, int64_t S) {
    for (int64_t r = 0; r < R; ++r) {
        if (S == 5) {
            dw_flat_block<KB, 5>(dw, dy, x, W, L, r, 0, S);
        } else {
            for (int64_t s = 0; s < S; ++s) dw_flat_block<KB, 1>(dw, dy, x, W, L, r, s, S);
        }
    }
}

void conv_dw_flat(float* const* dw, const float* const* dy, int64_t K, const float* x, int64_t W,
                  int64_t L, int64_t R, int64_t S) {
    int64_t k = 0;
    for (; k + 2 <= K; k += 2) dw_flat_kernels<2>(dw + k, dy + k, x, W, L, R, S);
    if (k < K) dw_flat_kernels<1>(dw + k, dy + k, x, W, L, R, S);
}

// ---- convolution over an input with zero rows, flat layout ----------------------------
// KB planes by the two vectors of one output row: 2*KB accumulators (at most 12, with the two
// input vectors and a broadcast weight, 15 ymm). Per tap of a row that is not zero: 2 loads
// of x and KB broadcasts feed 2*KB FMAs.
template <int KB>
void acc_rows_block(float* const* y, const float* const* w, const float* x, int64_t W, int64_t Ho,
                    int64_t R, int64_t z0, int64_t z1) {
    constexpr int S = 5;
    for (int64_t p = 0; p < Ho; ++p) {
        const int64_t lo = std::max<int64_t>(0, z0 - p), hi = std::min<int64_t>(R - 1, z1 - p);
        __m256 acc[KB][2];
        for (int k = 0; k < KB; ++k)
            for (int v = 0; v < 2; ++v) acc[k][v] = _mm256_loadu_ps(y[k] + p * W + 8 * v);
        for (int64_t r = lo; r <= hi; ++r) {
            const float* xr = x + (p + r) * W;
            for (int s = 0; s < S; ++s) {
                const __m256 x0 = _mm256_loadu_ps(xr + s), x1 = _mm256_loadu_ps(xr + s + 8);
                for (int k = 0; k < KB; ++k) {
                    const __m256 wv = _mm256_broadcast_ss(w[k] + r * S + s);
                    acc[k][0] = _mm256_fmadd_ps(wv, x0, acc[k][0]);
                    acc[k][1] = _mm256_fmadd_ps(wv, x1, acc[k][1]);
                }
            }
        }
        for (int k = 0; k < KB; ++k)
            for (int v = 0; v < 2; ++v) _mm256_storeu_ps(y[k] + p * W + 8 * v, acc[k][v]);
    }
}

void conv_acc_rows(float* const* y, const float* const* w, int64_t K, const float* x, int64_t W,
                   int64_t Ho, int64_t /*Wo*/, int64_t R, int64_t /*S*/, int64_t z0, int64_t z1) {
    for (int64_t k = 0; k < K; k += 6) {
        switch (std::min<int64_t>(6, K - k)) {
            case 6: acc_rows_block<6>(y + k, w + k, x, W, Ho, R, z0, z1); break;
            case 5: acc_rows_block<5>(y + k, w + k, x, W, Ho, R, z0, z1); break;
            case 4: acc_rows_block<4>(y + k, w + k, x, W, Ho, R, z0, z1); break;
            case 3: acc_rows_block<3>(y + k, w + k, x, W, Ho, R, z0, z1); break;
            case 2: acc_rows_block<2>(y + k, w + k, x, W, Ho, R, z0, z1); break;
            default: acc_rows_block<1>(y + k, w + k, x, W, Ho, R, z0, z1); break;
        }
    }
}

// ---- a sum in double ---------------------------------------------------------------------
// The scalar path's eight chains, s0..s3 and s4..s7 as the lanes of two double vectors.
double sum_floats(const float* a, int64_t n) {
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    const int64_t full = n / 8 * 8;
    for (int64_t i = 0; i < full; i += 8) {
        const __m256 v = _mm256_loadu_ps(a + i);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    alignas(32) double s[8];
    _mm256_store_pd(s, lo);
    _mm256_store_pd(s + 4, hi);
    double tail = 0;
    for (int64_t i = full; i < n; ++i) tail += a[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

// ---- small matrix products (the full connections' backward, network/gradients.cpp) ---
// NR rows of y by NV vectors of columns: NR*NV accumulators (at most 4 x 3), each load of b
// shared by the NR rows and each broadcast of a by the NV vectors. Every y[n][i] sums its
// products over k ascending, whatever the blocking.
template <int NR, int NV, bool TAIL>
inline void matmul_block(float* y, const float* a, int64_t lda_n, int64_t lda_k, const float* b,
                         int64_t Kd, int64_t I, int64_t i0, __m256i m) {
    __m256 acc[NR][NV];
    for (int r = 0; r < NR; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
    for (int64_t k = 0; k < Kd; ++k) {
        __m256 bv[NV];
        const float* bk = b + k * I + i0;
        for (int v = 0; v < NV; ++v)
            bv[v] = (TAIL && v == NV - 1) ? _mm256_maskload_ps(bk + 8 * v, m)
                                          : _mm256_loadu_ps(bk + 8 * v);
        for (int r = 0; r < NR; ++r) {
            const __m256 av = _mm256_broadcast_ss(a + r * lda_n + k * lda_k);
            for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < NR; ++r)
        for (int v = 0; v < NV; ++v) {
            float* yr = y + r * I + i0 + 8 * v;
            if (TAIL && v == NV - 1)
                _mm256_maskstore_ps(yr, m, acc[r][v]);
            else
                _mm256_storeu_ps(yr, acc[r][v]);
        }
}

template <int NR>
void matmul_rows(float* y, const float* a, int64_t lda_n, int64_t lda_k, const float* b, int64_t Kd,
                 int64_t I) {
    int64_t i0 = 0;
    for (; i0 + 24 <= I; i0 += 24)
        matmul_block<NR, 3, false>(y, a, lda_n, lda_k, b, Kd, I, i0, __m256i());
    const int64_t rest = I - i0;
    if (rest == 0) return;
    const int64_t nv = (rest + 7) / 8, last = rest - 8 * (nv - 1);
    const __m256i m = tail_mask(last);
    switch (nv * 2 + (last != 8 ? 1 : 0)) {
        case 2: matmul_block<NR, 1, false>(y, a, lda_n, lda_k, b, Kd, I, i0, m); break;
        case 3: matmul_block<NR, 1, true>(y, a, lda_n, lda_k, b, Kd, I, i0, m); break;
        case 4: matmul_block<NR, 2, false>(y, a, lda_n, lda_k, b, Kd, I, i0, m); break;
        case 5: matmul_block<NR, 2, true>(y, a, lda_n, lda_k, b, Kd, I, i0, m); break;
        default: matmul_block<NR, 3, true>(y, a, lda_n, lda_k, b, Kd, I, i0, m); break;
    }
}

void matmul(float* y, const float* a, int64_t lda_n, int64_t lda_k, const float* b, int64_t N,
            int64_t Kd, int64_t I) {
    int64_t n = 0;
    for (; n + 4 <= N; n += 4) matmul_rows<4>(y + n * I, a + n * lda_n, lda_n, lda_k, b, Kd, I);
    switch (N - n) {
        case 3: matmul_rows<3>(y + n * I, a + n * lda_n, lda_n, lda_k, b, Kd, I); break;
        case 2: matmul_rows<2>(y + n * I, a + n * lda_n, lda_n, lda_k, b, Kd, I); break;
        case 1: matmul_rows<1>(y + n * I, a + n * lda_n, lda_n, lda_k, b, Kd, I); break;
        default: break;
    }
}

// The FMA probe: kFmaChains independent ymm chains a = fma(a, m, c), 8 multiply-adds per
// instruction. m < 1: every lane settles at c / (1 - m), no overflow and no denormals.
int64_t fma_chains(int64_t rounds, double* sink) {
    static_assert(kFmaChains == 12, "one variable per chain below");
    const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
    // named variables, not an array: each stays in a register at any optimisation level (an
    // array lives in memory at the -O2 of a sanitizer build: a load and a store per chain)
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2),
           a3 = _mm256_set1_ps(3), a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5),
           a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7), a8 = _mm256_set1_ps(8),
           a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
    for (int64_t i = 0; i < rounds; ++i) {
        a0 = _mm256_fmadd_ps(a0, m, c);
        a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c);
        a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c);
        a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c);
        a11 = _mm256_fmadd_ps(a11, m, c);
    }
    const __m256 s0 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    const __m256 s1 = _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7));
    const __m256 s2 = _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11));
    *sink = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), s2));
    return rounds * kFmaChains * 8;
}

}  // namespace

// lanes_avx2.cpp
void convs8(float* h4, const float* x, int64_t nb, const ConvsPlan8& plan);
void train8_forward(float* h4, const float* x, int64_t nb, const ConvsPlan8& plan, float* ws);
void train8_backward(double* part, const float* dh4, int64_t nb, const ConvsPlan8& plan, float* ws);

const KernelTable kTable = {
    "avx2",        conv_plane,      conv_dw_plane,   linear_rows,
    axpy,          axpy_diff,       subsample_plane, subsample_backward_plane,
    squash,        squash_backward, rbf_rows,        outer_update,
    conv_acc_flat, conv_dw_flat,    conv_acc_rows,   matmul,
    sum_floats,    convs8,          train8_forward,  train8_backward,
    fma_chains,
};

}  // namespace avx2
}  // namespace lenet_fast
