// The per-ISA micro-kernels: the innermost loops, one table of function pointers per
// instruction set. The drivers (conv2d.cpp, sparse_conv.cpp, ...) own shapes, threads and
// data layout, and call these through dispatch.h's active table.
//
// isa_scalar.cpp holds the plain loops: the reference C++ kernels, the fallback on every
// CPU, and what the SIMD files are tested against. isa_avx2.cpp holds the same functions
// with AVX2+FMA in their own namespace, compiled with -mavx2 -mfma for that file alone.
#pragma once

#include <cstdint>

namespace lenet_fast {

// One output plane of a (dense or sparse) convolution, as a list of (input map, kernel)
// pairs: y (Ho,Wo) = bias + sum_p correlation(x + cidx[p]*H*W, w + widx[p]*R*S),
// each input map (H,W), each kernel (R,S).
struct PlaneArgs {
    const float* x;       // first input map of this image
    const float* w;       // first kernel
    const int32_t* cidx;  // npairs input-map indices
    const int32_t* widx;  // npairs kernel indices
    int64_t npairs;
    float bias;
    int64_t H, W, R, S;
};

// LeNet-5's C1 .. S4 for eight images at once (KernelTable::convs8): the parameters, with
// S2's and S4's coefficients as the layers apply them (the mean's 0.25 included), and C3's
// kernels seen from its outputs: output map k sums over its c3n[k] input maps c3c[k][j]
// (ascending), with kernel c3w[k][j] (5,5).
struct ConvsPlan8 {
    const float* c1w;  // (6,5,5)
    const float* c1b;  // (6,)
    const float* coef2;
    const float* bias2;  // (6,) each
    int c3n[16];
    int c3c[16][6];
    const float* c3w[16][6];
    const float* c3b;  // (16,)
    const float* coef4;
    const float* bias4;  // (16,) each
    // training only (train8_backward): C3 seen from its inputs (input map c feeds the
    // in_n[c] output maps in_k[c][j], ascending, through kernel number in_t[c][j]), and
    // where each gradient goes in the block's partial sums (network/plan.h's Partial)
    int in_n[6];
    int in_k[6][16];
    int in_t[6][16];
    const float* c3w0;  // C3's first kernel: c3w[k][j] - c3w0 = 25 x its kernel number
    int64_t part_c1w, part_c1b, part_s2c, part_s2b, part_c3w, part_c3b, part_s4c, part_s4b;
};

// What train8_forward keeps for train8_backward, in floats (32-byte aligned): the input and
// the squashed outputs of C1, S2, C3 and S4 of eight images, one vector per value.
constexpr int64_t kTrain8Floats = 8 * (1024 + 4704 + 1176 + 1600 + 400);

struct KernelTable {
    const char* name;

    // y (Ho,Wo) as PlaneArgs says
    void (*conv_plane)(float* y, const PlaneArgs& a);

    // dw (R,S) += sum_n sum_ij dy_n[i,j] x_n[i+r, j+s] over n < N images, where image n's
    // map is x + n*x_stride (H,W) and its output gradient dy + n*dy_stride (Ho,Wo).
    // Summed in float within an image and in double across images: a float sum over a
    // whole batch (50,000 terms for C1 at N = 64) would lose about 3 digits.
    void (*conv_dw_plane)(float* dw, const float* x, int64_t x_stride, const float* dy,
                          int64_t dy_stride, int64_t N, int64_t H, int64_t W, int64_t R, int64_t S);

    // y (N,O) = x (N,I) @ w (O,I)^T + b (O,)   (b may be null: zero)
    void (*linear_rows)(float* y, const float* x, const float* w, const float* b, int64_t N,
                        int64_t I, int64_t O);

    // y (n) += alpha * x (n)
    void (*axpy)(float* y, float alpha, const float* x, int64_t n);

    // y (n) += alpha * (a (n) - b (n))
    void (*axpy_diff)(float* y, float alpha, const float* a, const float* b, int64_t n);

    // y (H/2,W/2) = coef * 2x2 block sums of x (H,W) + bias
    void (*subsample_plane)(float* y, const float* x, float coef, float bias, int64_t H, int64_t W);

    // dx (H,W) = coef * dy broadcast over each 2x2 block; returns sum(dy * block sums of x)
    float (*subsample_backward_plane)(float* dx, const float* x, const float* dy, float coef,
                                      int64_t H, int64_t W);

    // y (n) = A tanh(S a (n))
    void (*squash)(float* y, const float* a, int64_t n);

    // da (n) = dy * (S/A) (A^2 - y^2)
    void (*squash_backward)(float* da, const float* y, const float* dy, int64_t n);

    // y (N,M) = squared distances of the rows of x (N,J) to the rows of c (M,J)
    void (*rbf_rows)(float* y, const float* x, const float* c, int64_t N, int64_t M, int64_t J);

    // One row w (n) of a full connection at batch 1 takes its SDLM step (network/sdlm.cpp):
    // w -= step (n) * (d * x (n)), each product rounded to float, then the subtraction (the
    // roundings of numpy's w -= step * g with g = d x; no FMA there).
    void (*outer_update)(float* w, const float* step, const float* x, float d, int64_t n);

    // Why two forward and two weight-gradient convolutions: conv_plane and conv_dw_plane
    // serve the per-layer API, whose planes are dense (Ho,Wo) and whose weight gradient sums
    // a whole batch (double across images); the flat pair below serves the fused network,
    // whose planes keep the input's row stride (junk columns zero) and whose gradient is per
    // image. Running the drivers on the flat pair would add a copy into and out of the flat
    // layout per plane. conv_acc_flat and conv_plane give the same bits, held by
    // tests/network/test_network_forward.py (the fused forward against the layer-by-layer
    // kernels, both ISAs); the two weight gradients sum in different orders by design.
    //
    // K planes accumulate the correlation of one input map x (row stride W) with their own
    // kernel (R,S), in "flat" layout: for every f < L,
    //   y[k][f] += sum over r, then s ascending, of w[k][r*S+s] * x[f + r*W + s].
    // A plane of Ho rows holds output (i,j) at f = i*W + j (L = (Ho-1)*W + Wo; the columns
    // j >= Wo between rows are junk). Each element receives the same multiply-adds in the
    // same order as conv_plane's pair loop, so planes started at the bias and run over a
    // pair list's inputs in its order give conv_plane's bits. K kernels share every load
    // of x (the fused forward, network/forward.cpp, runs C1 and C3 this way). bias not null: the
    // planes start at bias[k] (y[k] = bias[k] + ...) instead of accumulating onto y[k].
    void (*conv_acc_flat)(float* const* y, const float* const* w, int64_t K, const float* x,
                          int64_t W, int64_t L, int64_t R, int64_t S, const float* bias);

    // The weight gradients of conv_acc_flat, K kernels from one input map x (row stride W):
    //   dw[k][r*S+s] = sum over f < L of dy[k][f] * x[f + r*W + s]      (overwritten)
    // dy[k] is an output gradient in flat layout (row stride W) whose junk columns must be
    // zero. Summed in float, one image at a time (the training pass, network/gradients.cpp).
    void (*conv_dw_flat)(float* const* dw, const float* const* dy, int64_t K, const float* x,
                         int64_t W, int64_t L, int64_t R, int64_t S);

    // conv_acc_flat over an input whose rows outside [z0, z1] are zero, row by row, with
    // the taps on those rows left out (C3's input gradient: the output gradient zero-padded
    // by 4, 30% of whose row-taps are zeros). For output rows p < Ho of the K planes (row
    // stride W) and columns j < Wo:
    //   y[k][p*W + j] += sum over r in [max(0, z0-p), min(R-1, z1-p)], then s < S ascending,
    //                    of w[k][r*S+s] * x[(p+r)*W + j + s].
    // Columns Wo .. 16 of a row may be written too (junk; W >= 16), and x is read up to
    // column 15 + S - 1 of the rows read. S = 5, Wo <= 16. Per element the same products
    // in the same order as conv_acc_flat, less those with a zero row of x.
    void (*conv_acc_rows)(float* const* y, const float* const* w, int64_t K, const float* x,
                          int64_t W, int64_t Ho, int64_t Wo, int64_t R, int64_t S, int64_t z0,
                          int64_t z1);

    // y[n][i] = sum over k < Kd ascending of a[n*lda_n + k*lda_k] * b[k*I + i], for n < N,
    // i < I (overwritten). lda_n = Kd, lda_k = 1: y = a @ b (the input gradient of a full
    // connection, dx = dy @ w); lda_n = 1, lda_k = O: y = a^T @ b over the batch (its weight
    // gradient, dw = dy^T @ x, each sum over the images in order).
    void (*matmul)(float* y, const float* a, int64_t lda_n, int64_t lda_k, const float* b,
                   int64_t N, int64_t Kd, int64_t I);

    // The sum of n floats in double: eight interleaved partial sums s0 .. s7 over the
    // elements i = 8m + l (l = 0..7), then ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)),
    // plus the n % 8 last ones in order. Both ISAs give the same bits.
    double (*sum_floats)(const float* a, int64_t n);

    // Images x (nb,32,32), nb <= 8, through C1, S2, C3, S4 and their squashings to the S4
    // outputs h4 (nb,400) (row n: image n's (16,5,5)), the eight images in the eight lanes
    // of a vector (lanes nb..7 compute zeros' outputs, never stored). Every element gets
    // the multiply-adds, sums and squashing of the flat path (conv_acc_flat, subsample_plane,
    // squash), in the same order, so the same bits: only which elements share a vector
    // changes. Null in a table without it (scalar): the network runs image by image.
    void (*convs8)(float* h4, const float* x, int64_t nb, const ConvsPlan8& plan);

    // Training on a block of nb <= 8 images in lanes. train8_forward: convs8, keeping the
    // activations in ws (kTrain8Floats). train8_backward: from the S4 outputs' gradients dh4
    // (nb,400), the gradients of C1 .. S4 of each image (summed in float within the image,
    // over its positions), added to part (double) image by image, in image order.
    void (*train8_forward)(float* h4, const float* x, int64_t nb, const ConvsPlan8& plan,
                           float* ws);
    void (*train8_backward)(double* part, const float* dh4, int64_t nb, const ConvsPlan8& plan,
                            float* ws);

    // Not a kernel of the network: the probe of the FMA peak (peak.cpp times it). Runs
    // `rounds` rounds of kFmaChains independent chains a = a * m + c, one multiply-add per
    // lane of each chain and round, and writes the sum of the chains to *sink, so that no
    // chain can be dropped. Returns the multiply-adds done.
    int64_t (*fma_chains)(int64_t rounds, double* sink);
};

// Independent multiply-add chains of the FMA probe: a chain waits on its own result (the
// FMA latency, 4-5 cycles on current x86 cores), and two FMA pipes need about twice that
// many chains in flight to stay busy; 12 covers both and still fits in 16 registers.
constexpr int kFmaChains = 12;

namespace scalar {
extern const KernelTable kTable;
}
#if defined(LENET_FAST_HAVE_AVX2)
namespace avx2 {
extern const KernelTable kTable;
}
#endif

}  // namespace lenet_fast
