// LeNet-5's C1 .. S4 with eight images in the eight lanes of each vector (KernelTable::convs8).
// Compiled with -mavx2 -mfma, like isa_avx2.cpp.
//
// Why lanes: with one image's positions in the lanes (the flat path, isa_avx2.cpp) a plane
// row of 28, 14 or 10 columns leaves lanes idle or computing junk columns, S4's 5-wide rows
// go scalar, and the compaction between layers is a copy per row. With one vector per pixel
// holding that pixel of eight images, every lane of every instruction is useful, whatever
// the plane's width, and the squashing and subsampling run on the convolution's output rows
// while they are in L1.
//
// Same bits as the flat path: each output element starts at its bias and receives, for its
// input maps in ascending order, the 25 multiply-adds of its kernel rows r, then columns s,
// ascending (conv_acc_flat's order, which is conv_plane's); S2 and S4 are
// fma(coef, (x00 + x10) + (x01 + x11), bias) as subsample_plane computes them; the squashing
// is squash()'s tanh8. tests/network/test_network_forward.py holds the fused forward to the
// layer-by-layer kernels' bits at batch sizes that take this path and the flat one.
#include <immintrin.h>

#include <cstdint>
#include <memory>

#include "isa.h"
#include "simd_avx2.h"

namespace lenet_fast {
namespace avx2 {
namespace {

using V = __m256;

// Full unrolling of the register tiles' loops, so that acc[j] with a constant j is a register
// (gcc keeps a loop of 14 x 5 taps rolled and the accumulators on the stack otherwise).
#if defined(__GNUC__) || defined(__clang__)
#define LENET_UNROLL _Pragma("GCC unroll 32")
#else
#define LENET_UNROLL
#endif

constexpr int kIn = 32, kPix = kIn * kIn;        // input side, pixels
constexpr int kM1 = 6, kS1 = 28, kS2 = 14;        // C1 maps, C1 side, S2 side
constexpr int kM3 = 16, kS3 = 10, kS4 = 5;        // C3 maps, C3 side, S4 side
constexpr int kN2 = kM1 * kS2 * kS2;              // 1176 S2 outputs
constexpr int kN4 = kM3 * kS4 * kS4;              // 400 S4 outputs
constexpr int kTile1 = 7;                         // C1 output columns per register tile

// r[0..7]: eight rows of eight floats -> their transpose (r[j] holds column j).
inline void transpose8(V* r) {
    const V t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const V t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const V t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const V t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const V u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const V u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const V u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const V u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// nb <= 8 images (32,32) -> X[p] = pixel p of images 0..7 (zeros for lanes >= nb).
void to_lanes(V* X, const float* x, int64_t nb) {
    for (int p = 0; p < kPix; p += 8) {
        V r[8];
        for (int n = 0; n < 8; ++n)
            r[n] = n < nb ? _mm256_loadu_ps(x + n * kPix + p) : _mm256_setzero_ps();
        transpose8(r);
        for (int j = 0; j < 8; ++j) X[p + j] = r[j];
    }
}

// One output row of a 5x5 correlation, J columns from j0, over one input map of row
// stride W (in pixels): acc[j] += sum_r sum_s w[r*5+s] x[(i+r)*W + j0+j+s], r then s
// ascending for every j. The five weights of a kernel row stay in registers while the row's
// J+4 input pixels stream past, each feeding the accumulators it touches.
template <int J>
inline void row_taps(V* acc, const V* x, int W, const float* w) {
    for (int r = 0; r < 5; ++r) {
        const V* xr = x + r * W;
        V wv[5];
        LENET_UNROLL
        for (int s = 0; s < 5; ++s) wv[s] = _mm256_set1_ps(w[r * 5 + s]);
        LENET_UNROLL
        for (int c = 0; c < J + 4; ++c) {
            const V xv = xr[c];
            LENET_UNROLL
            for (int s = 0; s < 5; ++s) {
                const int j = c - s;
                if (j >= 0 && j < J) acc[j] = _mm256_fmadd_ps(wv[s], xv, acc[j]);
            }
        }
    }
}

// 2x2 subsampling of two squashed rows a, b into n outputs, squashed:
// y[q] = A tanh(S fma(coef, (a[2q] + b[2q]) + (a[2q+1] + b[2q+1]), bias)).
inline void subsample_rows(V* y, const V* a, const V* b, int n, float coef, float bias) {
    const V cv = _mm256_set1_ps(coef), bv = _mm256_set1_ps(bias);
    for (int q = 0; q < n; ++q) {
        const V s = _mm256_add_ps(_mm256_add_ps(a[2 * q], b[2 * q]),
                                  _mm256_add_ps(a[2 * q + 1], b[2 * q + 1]));
        y[q] = squash8(_mm256_fmadd_ps(cv, s, bv));
    }
}

// C1 + squash + S2 + squash: X (32,32) lanes -> H2 (6,14,14) lanes. Row pair by row pair,
// so the six input rows a pair reads stay in L1 for all six maps.
void c1_s2(V* H2, const V* X, const ConvsPlan8& pl) {
    alignas(32) V rows[2][kS1];
    for (int p = 0; p < kS2; ++p)
        for (int k = 0; k < kM1; ++k) {
            const float* w = pl.c1w + k * 25;
            for (int q = 0; q < 2; ++q) {
                const int i = 2 * p + q;
                for (int j0 = 0; j0 < kS1; j0 += kTile1) {
                    V acc[kTile1];
                    for (int j = 0; j < kTile1; ++j) acc[j] = _mm256_set1_ps(pl.c1b[k]);
                    row_taps<kTile1>(acc, X + i * kIn + j0, kIn, w);
                    for (int j = 0; j < kTile1; ++j) rows[q][j0 + j] = squash8(acc[j]);
                }
            }
            subsample_rows(H2 + (k * kS2 + p) * kS2, rows[0], rows[1], kS2, pl.coef2[k],
                           pl.bias2[k]);
        }
}

// C3 + squash + S4 + squash: H2 (6,14,14) lanes -> H4 (16,5,5) lanes.
void c3_s4(V* H4, const V* H2, const ConvsPlan8& pl) {
    alignas(32) V rows[2][kS3];
    for (int p = 0; p < kS4; ++p)
        for (int k = 0; k < kM3; ++k) {
            for (int q = 0; q < 2; ++q) {
                const int i = 2 * p + q;
                V acc[kS3];
                for (int j = 0; j < kS3; ++j) acc[j] = _mm256_set1_ps(pl.c3b[k]);
                for (int t = 0; t < pl.c3n[k]; ++t)
                    row_taps<kS3>(acc, H2 + (pl.c3c[k][t] * kS2 + i) * kS2, kS2, pl.c3w[k][t]);
                for (int j = 0; j < kS3; ++j) rows[q][j] = squash8(acc[j]);
            }
            subsample_rows(H4 + (k * kS4 + p) * kS4, rows[0], rows[1], kS4, pl.coef4[k],
                           pl.bias4[k]);
        }
}

// H4 (400) lanes -> rows h4 (nb,400).
void from_lanes(float* h4, const V* H4, int64_t nb) {
    for (int f = 0; f < kN4; f += 8) {
        V r[8];
        for (int j = 0; j < 8; ++j) r[j] = H4[f + j];
        transpose8(r);
        for (int64_t n = 0; n < nb; ++n) _mm256_storeu_ps(h4 + n * kN4 + f, r[n]);
    }
}

// The lanes of one call: the input, S2's and S4's outputs (2,600 vectors, 83 KB), one per
// thread, allocated on the thread's first call.
struct Lanes {
    V x[kPix];
    V h2[kN2];
    V h4[kN4];
};

}  // namespace

void convs8(float* h4, const float* x, int64_t nb, const ConvsPlan8& plan) {
    thread_local std::unique_ptr<Lanes> mem;
    if (!mem) mem = std::make_unique<Lanes>();
    Lanes& L = *mem;
    to_lanes(L.x, x, nb);
    c1_s2(L.h2, L.x, plan);
    c3_s4(L.h4, L.h2, plan);
    from_lanes(h4, L.h4, nb);
}

}  // namespace avx2
}  // namespace lenet_fast
