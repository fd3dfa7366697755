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
#include <initializer_list>
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

constexpr int kIn = 32, kPix = kIn * kIn;   // input side, pixels
constexpr int kM1 = 6, kS1 = 28, kS2 = 14;  // C1 maps, C1 side, S2 side
constexpr int kM3 = 16, kS3 = 10, kS4 = 5;  // C3 maps, C3 side, S4 side
constexpr int kN2 = kM1 * kS2 * kS2;        // 1176 S2 outputs
constexpr int kN4 = kM3 * kS4 * kS4;        // 400 S4 outputs
constexpr int kTile1 = 7;                   // C1 output columns per register tile

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

// C1 + squash + S2 + squash: X (32,32) lanes -> H2 (6,14,14) lanes, and C1's squashed
// output H1 (6,28,28) when H1 is not null (training). Row pair by row pair, so the six
// input rows a pair reads stay in L1 for all six maps.
void c1_s2(V* H2, const V* X, const ConvsPlan8& pl, V* H1) {
    alignas(32) V buf[2][kS1];
    for (int p = 0; p < kS2; ++p)
        for (int k = 0; k < kM1; ++k) {
            const float* w = pl.c1w + k * 25;
            V* rows[2] = {buf[0], buf[1]};
            if (H1 != nullptr)
                for (int q = 0; q < 2; ++q) rows[q] = H1 + (k * kS1 + 2 * p + q) * kS1;
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

// C3 + squash + S4 + squash: H2 (6,14,14) lanes -> H4 (16,5,5) lanes, and C3's squashed
// output H3 (16,10,10) when H3 is not null.
void c3_s4(V* H4, const V* H2, const ConvsPlan8& pl, V* H3) {
    alignas(32) V buf[2][kS3];
    for (int p = 0; p < kS4; ++p)
        for (int k = 0; k < kM3; ++k) {
            V* rows[2] = {buf[0], buf[1]};
            if (H3 != nullptr)
                for (int q = 0; q < 2; ++q) rows[q] = H3 + (k * kS3 + 2 * p + q) * kS3;
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

// rows h4 (nb,400) -> H4 (400) lanes (zeros for lanes >= nb).
void to_lanes400(V* H4, const float* h4, int64_t nb) {
    for (int f = 0; f < kN4; f += 8) {
        V r[8];
        for (int n = 0; n < 8; ++n)
            r[n] = n < nb ? _mm256_loadu_ps(h4 + n * kN4 + f) : _mm256_setzero_ps();
        transpose8(r);
        for (int j = 0; j < 8; ++j) H4[f + j] = r[j];
    }
}

// The lanes of one inference call: the input, S2's and S4's outputs (2,600 vectors, 83 KB),
// one per thread, allocated on the thread's first call.
struct Lanes {
    V x[kPix];
    V h2[kN2];
    V h4[kN4];
};

// ---- training ---------------------------------------------------------------------------
constexpr int kN1 = kM1 * kS1 * kS1, kN3 = kM3 * kS3 * kS3;  // 4704, 1600

// train8_forward's activations in its caller's workspace.
struct Acts {
    V* x;
    V* h1;
    V* h2;
    V* h3;
    V* h4;
    explicit Acts(float* ws) {
        V* at = reinterpret_cast<V*>(ws);
        x = at;
        h1 = x + kPix;
        h2 = h1 + kN1;
        h3 = h2 + kN2;
        h4 = h3 + kN3;
    }
};

// The backward's own buffers, per thread: S4's output gradient, C3's (pre-activation), S2's.
struct Grads {
    V dh4[kN4];
    V da3[kN3];
    V da2[kN2];
};

// dE/da of a squashed value y = A tanh(S a) from dE/dy: dy (S/A) (A^2 - y^2), as
// squash_backward computes it.
inline V squash_grad(V y, V dy) {
    constexpr float k = kSquashS / kSquashA, A2 = kSquashA * kSquashA;
    const V d =
        _mm256_mul_ps(_mm256_set1_ps(k), _mm256_sub_ps(_mm256_set1_ps(A2), _mm256_mul_ps(y, y)));
    return _mm256_mul_ps(dy, d);
}

// part[at + n] += lane n of v, for the nb images of the block, in image order.
inline void add_lanes(double* part, V v, int64_t nb) {
    alignas(32) float f[8];
    _mm256_store_ps(f, v);
    for (int64_t n = 0; n < nb; ++n) part[n] += static_cast<double>(f[n]);
}
// The partial sums are laid out by parameter element: `part + at` of one parameter element
// receives its images one after another. add_lane_sums gives the element `at`'s total over
// the block's images in image order (part[at] += image 0, then image 1, ...).
inline void add_lane_sums(double* part, int64_t at, V v, int64_t nb) {
    alignas(32) float f[8];
    _mm256_store_ps(f, v);
    double s = part[at];
    for (int64_t n = 0; n < nb; ++n) s += static_cast<double>(f[n]);
    part[at] = s;
}

// Weight gradient of one 5x5 kernel from one input map, a pair of kernel rows (r0, r0+1)
// at a time (10 accumulators, 10 independent FMA chains): dw[r][s] = sum over the output
// positions (i, j) of dy[i][j] x[(i+r)*W + j+s], per lane, j in chunks of C outputs whose
// gradients stay in registers while the input row streams past. Ho x Wo outputs (Wo a
// multiple of C), input row stride W.
template <int Ho, int Wo, int W, int C>
void kernel_grad(V* dw, const V* dy, const V* x) {
    for (int r0 = 0; r0 < 5; r0 += 2) {
        const int nr = r0 + 1 < 5 ? 2 : 1;
        V acc[2][5];
        for (int q = 0; q < 2; ++q)
            for (int s = 0; s < 5; ++s) acc[q][s] = _mm256_setzero_ps();
        for (int i = 0; i < Ho; ++i)
            for (int j0 = 0; j0 < Wo; j0 += C) {
                V g[C];
                LENET_UNROLL
                for (int j = 0; j < C; ++j) g[j] = dy[i * Wo + j0 + j];
                for (int q = 0; q < nr; ++q) {
                    const V* xr = x + (i + r0 + q) * W + j0;
                    LENET_UNROLL
                    for (int c = 0; c < C + 4; ++c) {
                        const V xv = xr[c];
                        LENET_UNROLL
                        for (int s = 0; s < 5; ++s) {
                            const int j = c - s;
                            if (j >= 0 && j < C) acc[q][s] = _mm256_fmadd_ps(g[j], xv, acc[q][s]);
                        }
                    }
                }
            }
        for (int q = 0; q < nr; ++q)
            for (int s = 0; s < 5; ++s) dw[(r0 + q) * 5 + s] = acc[q][s];
    }
}

// The input gradient of C3 for output columns Q0 .. Q0+J-1 of one row from one kernel row
// w (5 weights in registers) and one row of C3's output gradient dy (10 columns):
// acc[q - Q0] += sum over s of w[s] dy[q - s], over the valid q - s only.
template <int J, int Q0>
inline void row_scatter(V* acc, const V* dy, const V* wv) {
    constexpr int lo = Q0 - 4 > 0 ? Q0 - 4 : 0, hi = Q0 + J - 1 < kS3 - 1 ? Q0 + J - 1 : kS3 - 1;
    LENET_UNROLL
    for (int j = lo; j <= hi; ++j) {
        const V g = dy[j];
        LENET_UNROLL
        for (int s = 0; s < 5; ++s) {
            const int q = j + s - Q0;
            if (q >= 0 && q < J) acc[q] = _mm256_fmadd_ps(wv[s], g, acc[q]);
        }
    }
}

// dH2 row p of input map c, columns Q0 .. Q0+6: the C3 output gradients of the maps c feeds
// through their kernels, over the kernel rows that meet C3's rows.
template <int Q0>
inline void c3_input_grad_tile(V* out, const V* da3, const ConvsPlan8& pl, int c, int p,
                               const float* c3w) {
    V acc[7];
    for (int q = 0; q < 7; ++q) acc[q] = _mm256_setzero_ps();
    for (int t = 0; t < pl.in_n[c]; ++t) {
        const V* dk = da3 + pl.in_k[c][t] * (kS3 * kS3);
        const float* w = c3w + pl.in_t[c][t] * 25;
        const int rlo = p - (kS3 - 1) > 0 ? p - (kS3 - 1) : 0, rhi = p < 4 ? p : 4;
        for (int r = rlo; r <= rhi; ++r) {
            V wv[5];
            for (int s = 0; s < 5; ++s) wv[s] = _mm256_set1_ps(w[r * 5 + s]);
            row_scatter<7, Q0>(acc, dk + (p - r) * kS3, wv);
        }
    }
    for (int q = 0; q < 7; ++q) out[Q0 + q] = acc[q];
}

}  // namespace

void convs8(float* h4, const float* x, int64_t nb, const ConvsPlan8& plan) {
    thread_local std::unique_ptr<Lanes> mem;
    if (!mem) mem = std::make_unique<Lanes>();
    Lanes& L = *mem;
    to_lanes(L.x, x, nb);
    c1_s2(L.h2, L.x, plan, nullptr);
    c3_s4(L.h4, L.h2, plan, nullptr);
    from_lanes(h4, L.h4, nb);
}

void train8_forward(float* h4, const float* x, int64_t nb, const ConvsPlan8& plan, float* ws) {
    const Acts a(ws);
    to_lanes(a.x, x, nb);
    c1_s2(a.h2, a.x, plan, a.h1);
    c3_s4(a.h4, a.h2, plan, a.h3);
    from_lanes(h4, a.h4, nb);
}

void train8_backward(double* part, const float* dh4, int64_t nb, const ConvsPlan8& pl, float* ws) {
    thread_local std::unique_ptr<Grads> mem;
    if (!mem) mem = std::make_unique<Grads>();
    Grads& G = *mem;
    const Acts a(ws);
    to_lanes400(G.dh4, dh4, nb);
    // S4 (and C3's squashing): da4 = squash'(h4) dh4; dcoef4 = sum da4 x (block sums of
    // h3); dbias4 = sum da4; da3 = squash'(h3) (coef4 da4) on each 2x2 block
    const V zero = _mm256_setzero_ps();
    for (int k = 0; k < kM3; ++k) {
        const V cv = _mm256_set1_ps(pl.coef4[k]);
        V dc = zero, db = zero;
        const V* h3 = a.h3 + k * kS3 * kS3;
        V* da3 = G.da3 + k * kS3 * kS3;
        for (int p = 0; p < kS4; ++p)
            for (int q = 0; q < kS4; ++q) {
                const int o = (k * kS4 + p) * kS4 + q;
                const V d = squash_grad(a.h4[o], G.dh4[o]);
                db = _mm256_add_ps(db, d);
                const int i00 = 2 * p * kS3 + 2 * q, i10 = i00 + kS3;
                const V bs = _mm256_add_ps(_mm256_add_ps(h3[i00], h3[i10]),
                                           _mm256_add_ps(h3[i00 + 1], h3[i10 + 1]));
                dc = _mm256_fmadd_ps(d, bs, dc);
                const V g = _mm256_mul_ps(cv, d);
                for (const int i : {i00, i00 + 1, i10, i10 + 1}) da3[i] = squash_grad(h3[i], g);
            }
        add_lane_sums(part, pl.part_s4c + k, dc, nb);
        add_lane_sums(part, pl.part_s4b + k, db, nb);
    }
    // C3: bias and kernel gradients, per output map k and each input map it reads
    for (int k = 0; k < kM3; ++k) {
        const V* d = G.da3 + k * kS3 * kS3;
        V db = zero;
        for (int i = 0; i < kS3 * kS3; ++i) db = _mm256_add_ps(db, d[i]);
        add_lane_sums(part, pl.part_c3b + k, db, nb);
        for (int j = 0; j < pl.c3n[k]; ++j) {
            V dw[25];
            kernel_grad<kS3, kS3, kS2, 5>(dw, d, a.h2 + pl.c3c[k][j] * kS2 * kS2);
            const int64_t at = pl.part_c3w + (pl.c3w[k][j] - pl.c3w0);
            for (int q = 0; q < 25; ++q) add_lane_sums(part, at + q, dw[q], nb);
        }
    }
    // C3's input gradient, then S2 (and C1's squashing): da2 = squash'(h2) dh2;
    // dcoef2 = sum da2 x (block sums of h1); dbias2 = sum da2; then da1 = squash'(h1)
    // (coef2 da2) on each 2x2 block, in place of h1 (read for the last time here)
    const float* c3w = pl.c3w0;
    for (int c = 0; c < kM1; ++c) {
        const V cv = _mm256_set1_ps(pl.coef2[c]);
        V dc = zero, db = zero;
        V* h1 = a.h1 + c * kS1 * kS1;
        for (int p = 0; p < kS2; ++p) {
            V dh2[kS2];
            c3_input_grad_tile<0>(dh2, G.da3, pl, c, p, c3w);
            c3_input_grad_tile<7>(dh2, G.da3, pl, c, p, c3w);
            for (int q = 0; q < kS2; ++q) {
                const V d = squash_grad(a.h2[(c * kS2 + p) * kS2 + q], dh2[q]);
                db = _mm256_add_ps(db, d);
                const int i00 = 2 * p * kS1 + 2 * q, i10 = i00 + kS1;
                const V bs = _mm256_add_ps(_mm256_add_ps(h1[i00], h1[i10]),
                                           _mm256_add_ps(h1[i00 + 1], h1[i10 + 1]));
                dc = _mm256_fmadd_ps(d, bs, dc);
                const V g = _mm256_mul_ps(cv, d);
                for (const int i : {i00, i00 + 1, i10, i10 + 1}) h1[i] = squash_grad(h1[i], g);
            }
        }
        add_lane_sums(part, pl.part_s2c + c, dc, nb);
        add_lane_sums(part, pl.part_s2b + c, db, nb);
    }
    // C1: bias and kernel gradients from da1 (now in h1's place) and the input
    for (int k = 0; k < kM1; ++k) {
        const V* d = a.h1 + k * kS1 * kS1;
        V db0 = zero, db1 = zero;
        for (int i = 0; i < kS1 * kS1; i += 2) {
            db0 = _mm256_add_ps(db0, d[i]);
            db1 = _mm256_add_ps(db1, d[i + 1]);
        }
        add_lane_sums(part, pl.part_c1b + k, _mm256_add_ps(db0, db1), nb);
        V dw[25];
        kernel_grad<kS1, kS1, kIn, 4>(dw, d, a.x);
        for (int q = 0; q < 25; ++q) add_lane_sums(part, pl.part_c1w + k * 25 + q, dw[q], nb);
    }
}

}  // namespace avx2
}  // namespace lenet_fast
