// The fused network's layout and plan (network.h's internals, shared by forward.cpp,
// gradients.cpp and sdlm.cpp): the layer sizes, the flat planes' geometry, the partial
// gradients' offsets, the Plan every image of a call shares, and the forward of C1 .. S4 and
// of C5 .. RBF that inference and training both run.
//
// All three paths run one per-image pipeline:
//   forward   C1, C3 as KernelTable::conv_acc_flat on "flat" planes (row stride the input's
//             width), S2, S4, the squashing, then C5, F6 and the RBF on blocks of up to 8
//             images (their weights read once per block, not once per image); blocks of 5
//             or more images run C1 .. S4 in lanes instead (KernelTable::convs8);
//   backward  the RBF, F6 and C5 as small matrix products (KernelTable::matmul) on the
//             block, then per image S4, C3 (its input gradient as conv_acc_rows over the
//             zero-padded output gradient with the kernels rotated, its weight gradient as
//             KernelTable::conv_dw_flat), S2, C1 (weight gradient only), or the block in
//             lanes (KernelTable::train8_backward).
// Every activation lives in a per-thread workspace grown once (no allocation per image).
// Threads work over fixed blocks of images and every sum over the batch runs in image (or
// block) order, so the results do not depend on the thread count.
#pragma once

#include <cmath>
#include <cstdint>

#include "../backprop.h"
#include "../isa.h"
#include "../network.h"

namespace lenet_fast {
namespace fused {

// Layer sizes (paper II-B). C5 is a 5x5 kernel over a 5x5 input: a full connection over
// (16,5,5).
constexpr int64_t kIn = 32, kK = 5, kKK = kK * kK;
constexpr int64_t kM1 = 6, kS1 = 28;   // C1 maps, side (S2: 14)
constexpr int64_t kM3 = 16, kS3 = 10;  // C3 maps, side (S4: 5)
constexpr int64_t kC5 = 120, kF6 = 84, kOut = 10;
constexpr int64_t kN1 = kM1 * kS1 * kS1, kN2 = kN1 / 4;  // 4704, 1176
constexpr int64_t kN3 = kM3 * kS3 * kS3, kN4 = kN3 / 4;  // 1600, 400
constexpr int64_t kMaxPairs = kM1 * kM3;                 // a full table: 96 C3 kernels

// Flat planes: C1's (28 rows of the input's 32 columns), S2's output (14 rows of 16: two
// full vectors), C3's (10 rows of S2's 14 columns). L: the span of a plane's outputs.
constexpr int64_t kS2 = kS1 / 2, kS2W = kIn / 2;
constexpr int64_t kFlat1 = kS1 * kIn, kFlatL1 = (kS1 - 1) * kIn + kS1;  // 896, 892
constexpr int64_t kFlatS2 = kS2 * kS2W;                                 // 224
constexpr int64_t kFlat3 = kS3 * kS2, kFlatL3 = (kS3 - 1) * kS2 + kS3;  // 140, 136
// C3's input gradient: dy zero-padded by 4 on every side (18x18), dx on flat planes of
// row stride 18.
constexpr int64_t kPad3 = kS3 + 2 * (kK - 1), kPadPlane3 = kPad3 * kPad3;  // 18, 324
constexpr int64_t kFlatB3 = kS2 * kPad3;                                   // 252

constexpr int64_t kBlock = 8;  // images per block of C5, F6 and the RBF
// From this many images a block runs C1 .. S4 in lanes (KernelTable::convs8, eight images
// per vector whatever the block's size) rather than image by image: a block of 8 in lanes
// costs about what LANES_MIN images cost one at a time (bench/bench_kernels.py).
constexpr int64_t kLanesMin = 5;
constexpr int64_t kImageCost = 328096;       // multiply-adds of one forward pass
constexpr int64_t kImageTrainCost = 865848;  // forward and backward

// numpy's argmin of a float32 row: the first minimum; a NaN is the minimum (its first one).
inline int64_t argmin_like_numpy(const float* y, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(y[i])) return i;
        if (y[i] < y[best]) best = i;
    }
    return best;
}

// The gradients of the parameters up to S4 (1,716 + 25 T numbers, 3% of the model) are
// summed per block of images in double ("partials"); those of C5, F6 and the centres are
// products over the whole batch of per-image rows kept in a Batch.
enum Partial : int64_t {
    kPC1W = 0,
    kPC1B = kPC1W + kM1 * kKK,
    kPS2C = kPC1B + kM1,
    kPS2B = kPS2C + kM1,
    kPC3B = kPS2B + kM1,
    kPS4C = kPC3B + kM3,
    kPS4B = kPS4C + kM3,
    kPC3W = kPS4B + kM3
};
inline int64_t partial_size(int64_t T) { return kPC3W + T * kKK; }

// What every image of one call shares: the kernels of C1; C3's connections seen from its
// inputs (for input c, the output maps k ascending, their kernels and kernel numbers: the
// order in which each output map meets its pairs in conv_plane) and from its outputs (for
// output k, the inputs c and the kernels rotated by 180 degrees, for the input gradient);
// the effective S2/S4 coefficients.
struct Plan {
    const float* c1w[kM1];
    int c3n[kM1] = {};
    int c3k[kM1][kM3];
    int c3t[kM1][kM3];
    const float* c3w[kM1][kM3];
    int bn[kM3] = {};
    int bc[kM3][kM1];
    const float* bw[kM3][kM1];
    ConvsPlan8 lanes{};  // for KernelTable::convs8
    int64_t T = 0;
    float coef2[kM1], coef4[kM3];
    float rot[kMaxPairs * kKK];  // C3's kernels rotated by 180 degrees (training only: the
                                 // inference path neither fills nor reads it)

    Plan(const float* const* p, const uint8_t* table, bool subsample_mean, bool backward) {
        for (int64_t k = 0; k < kM1; ++k) c1w[k] = p[kC1W] + k * kKK;
        // C3's kernels are packed by output map k, then input map c (table_pairs' order)
        for (int64_t k = 0; k < kM3; ++k)
            for (int64_t c = 0; c < kM1; ++c)
                if (table[c * kM3 + k]) {
                    const int j = c3n[c]++;
                    c3k[c][j] = static_cast<int>(k);
                    c3t[c][j] = static_cast<int>(T);
                    c3w[c][j] = p[kC3W] + T * kKK;
                    lanes.c3c[k][bn[k]] = static_cast<int>(c);
                    lanes.c3w[k][bn[k]] = p[kC3W] + T * kKK;
                    bc[k][bn[k]] = static_cast<int>(c);
                    bw[k][bn[k]++] = rot + T * kKK;
                    ++T;
                }
        for (int64_t k = 0; k < kM3; ++k) lanes.c3n[k] = bn[k];
        for (int64_t c = 0; c < kM1; ++c) {
            lanes.in_n[c] = c3n[c];
            for (int j = 0; j < c3n[c]; ++j) {
                lanes.in_k[c][j] = c3k[c][j];
                lanes.in_t[c][j] = c3t[c][j];
            }
        }
        lanes.c3w0 = p[kC3W];
        lanes.part_c1w = kPC1W;
        lanes.part_c1b = kPC1B;
        lanes.part_s2c = kPS2C;
        lanes.part_s2b = kPS2B;
        lanes.part_c3w = kPC3W;
        lanes.part_c3b = kPC3B;
        lanes.part_s4c = kPS4C;
        lanes.part_s4b = kPS4B;
        lanes.c1w = p[kC1W];
        lanes.c1b = p[kC1B];
        lanes.bias2 = p[kS2Bias];
        lanes.c3b = p[kC3B];
        lanes.bias4 = p[kS4Bias];
        lanes.coef2 = coef2;
        lanes.coef4 = coef4;
        refresh(p, subsample_mean, backward);
    }
    Plan(const Plan&) = delete;  // bw points into rot
    Plan& operator=(const Plan&) = delete;

    // What depends on the parameters' values (the SDLM pass updates them every pattern).
    void refresh(const float* const* p, bool subsample_mean, bool backward) {
        if (backward) rotate_kernels(rot, p[kC3W], T, kKK);
        const float sub = subsample_mean ? 0.25f : 1.0f;  // model._sub_coef: coef * 0.25
        for (int64_t c = 0; c < kM1; ++c) coef2[c] = p[kS2Coef][c] * sub;
        for (int64_t c = 0; c < kM3; ++c) coef4[c] = p[kS4Coef][c] * sub;
    }
};

// Rows of Wo values from planes of row stride W (flat) to compact (K,Ho,Wo). The sizes are
// template parameters so that each row's copy is a few inline moves, not a library call
// (memmove for 40 to 56 bytes, 244 calls per image in inference).
template <int64_t K, int64_t Plane, int64_t Ho, int64_t W, int64_t Wo>
void compact(float* y, const float* flat) {
    for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < Ho; ++i) {
            const float* src = flat + k * Plane + i * W;
            float* dst = y + (k * Ho + i) * Wo;
            for (int64_t j = 0; j < Wo; ++j) dst[j] = src[j];
        }
}

// Where one image's C1 .. S4 activations go. Inference lets c3 share h1's memory and h3
// s2's; training keeps h1, h2, h3 for the backward pass.
struct ConvActs {
    float* h1;  // (6, 28, 32) flat C1 output, squashed (junk columns too)
    float* s2;  // (6, 14, 16) scratch: S2 on the flat planes
    float* h2;  // (6, 14, 14) S2 output, squashed
    float* c3;  // (16, 10, 14) scratch: C3's flat planes
    float* h3;  // (16, 10, 10) C3 output, squashed
    float* h4;  // (400,) S4 output, squashed
};

// One image through C1 .. S4: conv_plane's multiply-adds for C1 and C3 (through
// conv_acc_flat, the same order per element), then the drivers' micro-kernels, so the
// layer-by-layer kernels' bits.
void forward_convs(const ConvActs& a, const float* const* p, const float* xi, const Plan& plan,
                   const KernelTable& kt);

// C5 (a full connection over (16,5,5)) + squash, F6 + squash, RBF, on the rows of a block:
// as linear_forward and rbf_forward compute them (the same bits at any batch size).
void forward_head(float* y, float* h5, float* h6, const float* h4, const float* const* p,
                  int64_t nb, const KernelTable& kt);

}  // namespace fused
}  // namespace lenet_fast
