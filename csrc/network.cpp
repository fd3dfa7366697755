// The whole LeNet-5 in C++ (see network.h): inference (network_forward), the gradients of
// a batch (network_gradients) and one SDLM pass (sdlm_pass), all on one per-image pipeline:
//
//   forward   C1, C3 as KernelTable::conv_acc_flat on "flat" planes (row stride the input's width),
//             S2, S4, the squashing, then C5, F6 and the RBF on blocks of up to 8 images
//             (their weights read once per block, not once per image);
//   backward  the RBF, F6 and C5 as small matrix products (KernelTable::matmul) on the block, then
//             per image S4, C3 (its input gradient as conv_acc_flat over the zero-padded
//             output gradient with the kernels rotated, its weight gradient as
//             KernelTable::conv_dw_flat), S2, C1 (weight gradient only).
//
// Every activation lives in a per-thread workspace grown once (no allocation per image).
// Threads work over fixed blocks of images and every sum over the batch runs in image (or
// block) order, so the results do not depend on the thread count. sdlm_pass is
// network_gradients on one pattern followed by the update, so the Python loop of
// train.py (model.gradients then params -= steps * g) gives its bits.
#include "network.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backprop.h"
#include "dispatch.h"
#include "kernels.h"

namespace lenet_fast {
namespace {

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
int64_t argmin_like_numpy(const float* y, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(y[i])) return i;
        if (y[i] < y[best]) best = i;
    }
    return best;
}

// numpy's sum of 10 float64 values along a row (pairwise_sum: eight partial sums, added
// as a tree, then the rest in order), so that Eq. 9 gives numpy's bits.
double sum10_like_numpy(const double* e) {
    double r = ((e[0] + e[1]) + (e[2] + e[3])) + ((e[4] + e[5]) + (e[6] + e[7]));
    for (int i = 8; i < kOut; ++i) r += e[i];
    return r;
}

// LeNet5.loss_gradient for one row of a batch of N: returns s E of the row and writes
// gy = dE/dy (10,) of the batch mean, float(g * (s / N)) as the model rounds it.
double loss_gradient(float* gy, const float* y, int64_t label, const LossOptions& opt, int64_t N) {
    const double scale = opt.loss_scale, gscale = scale / static_cast<double>(N);
    if (!opt.map_loss) {  // Eq. 8: E = s y_label
        for (int64_t i = 0; i < kOut; ++i) gy[i] = 0.0f;
        gy[label] = static_cast<float>(gscale);
        return scale * static_cast<double>(y[label]);
    }
    // Eq. 9: E = s (y_label + log(e^-j + sum_i e^-y_i)), shifted by m = max(-j, max_i -y_i)
    const double j = opt.map_j;
    double m = -j;
    for (int64_t i = 0; i < kOut; ++i) {
        const double v = -static_cast<double>(y[i]);
        m = (std::isnan(v) || v > m) ? v : m;  // numpy's maximum propagates NaN
        if (std::isnan(m)) break;
    }
    double e[kOut];
    for (int64_t i = 0; i < kOut; ++i) e[i] = std::exp(-static_cast<double>(y[i]) - m);
    const double z = std::exp(-j - m) + sum10_like_numpy(e);
    const double loss = static_cast<double>(y[label]) + (m + std::log(z));
    for (int64_t i = 0; i < kOut; ++i) {
        double g = -e[i] / z;
        if (i == label) g += 1.0;
        gy[i] = static_cast<float>(g * gscale);
    }
    return scale * loss;
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
int64_t partial_size(int64_t T) { return kPC3W + T * kKK; }

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
                   const KernelTable& kt) {
    constexpr int64_t P2 = kS1 * kS1 / 4, P3 = kS3 * kS3, P4 = P3 / 4;
    float* planes[kM3];
    // C1 + squash: the six maps share each load of the input
    for (int64_t k = 0; k < kM1; ++k) planes[k] = a.h1 + k * kFlat1;
    kt.conv_acc_flat(planes, plan.c1w, kM1, xi, kIn, kFlatL1, kK, kK, p[kC1B]);
    kt.squash(a.h1, a.h1, kM1 * kFlat1);  // the junk columns too: 14% more, no compaction
    // S2 + squash: on the flat planes, (28,32) -> (14,16), whose rows are two full vectors
    // (a (28,28) plane's 14-wide rows are one vector and six scalars); then compacted
    for (int64_t c = 0; c < kM1; ++c)
        kt.subsample_plane(a.s2 + c * kFlatS2, a.h1 + c * kFlat1, plan.coef2[c], p[kS2Bias][c], kS1,
                           kIn);
    compact<kM1, kFlatS2, kS2, kS2W, kS2>(a.h2, a.s2);
    kt.squash(a.h2, a.h2, kN2);
    // C3 + squash: input map by input map, into every output map it feeds
    for (int64_t k = 0; k < kM3; ++k)
        std::fill(a.c3 + k * kFlat3, a.c3 + k * kFlat3 + kFlatL3, p[kC3B][k]);
    for (int64_t c = 0; c < kM1; ++c) {
        for (int j = 0; j < plan.c3n[c]; ++j) planes[j] = a.c3 + plan.c3k[c][j] * kFlat3;
        kt.conv_acc_flat(planes, plan.c3w[c], plan.c3n[c], a.h2 + c * P2, kS2, kFlatL3, kK, kK,
                         nullptr);
    }
    compact<kM3, kFlat3, kS3, kS2, kS3>(a.h3, a.c3);
    kt.squash(a.h3, a.h3, kN3);
    // S4 + squash
    for (int64_t c = 0; c < kM3; ++c)
        kt.subsample_plane(a.h4 + c * P4, a.h3 + c * P3, plan.coef4[c], p[kS4Bias][c], kS3, kS3);
    kt.squash(a.h4, a.h4, kN4);
}

// C5 (a full connection over (16,5,5)) + squash, F6 + squash, RBF, on the rows of a block:
// as linear_forward and rbf_forward compute them (the same bits at any batch size).
void forward_head(float* y, float* h5, float* h6, const float* h4, const float* const* p,
                  int64_t nb, const KernelTable& kt) {
    kt.linear_rows(h5, h4, p[kC5W], p[kC5B], nb, kN4, kC5);
    kt.squash(h5, h5, nb * kC5);
    kt.linear_rows(h6, h5, p[kF6W], p[kF6B], nb, kC5, kF6);
    kt.squash(h6, h6, nb * kF6);
    kt.rbf_rows(y, h6, p[kRbfC], nb, kOut, kF6);
}

// ---- inference ---------------------------------------------------------------------------
// Per thread: one image's flat planes (C1's, then C3's), S2's flat output (then C3's
// compact one), S2's compact output, and a block's S4, C5 and F6 outputs. 12,984 floats
// (51 KB).
constexpr int64_t kFwdF = std::max(kM1 * kFlat1, kM3* kFlat3);
constexpr int64_t kFwdB0 = std::max(kM1 * kFlatS2, kN3), kFwdB1 = kN2;
constexpr int64_t kFwdFloats = kFwdF + kFwdB0 + kFwdB1 + kBlock * (kN4 + kC5 + kF6);

float* forward_workspace() {
    thread_local std::vector<float> mem;
    if (mem.size() < static_cast<size_t>(kFwdFloats)) mem.assign(kFwdFloats, 0.0f);
    return mem.data();
}

// Images x (nb,1,32,32), nb <= kBlock, to their penalties y (nb,10).
void forward_block(float* y, const float* const* p, const float* x, int64_t nb, const Plan& plan,
                   const KernelTable& kt, float* ws) {
    float* fl = ws;
    float* b0 = fl + kFwdF;
    float* b1 = b0 + kFwdB0;
    float* h4 = b1 + kFwdB1;
    float* h5 = h4 + kBlock * kN4;
    float* h6 = h5 + kBlock * kC5;
    if (kt.convs8 != nullptr && nb >= kLanesMin) {
        kt.convs8(h4, x, nb, plan.lanes);
    } else {
        for (int64_t n = 0; n < nb; ++n)
            forward_convs({fl, b0, b1, fl, b0, h4 + n * kN4}, p, x + n * kIn * kIn, plan, kt);
    }
    forward_head(y, h5, h6, h4, p, nb, kt);
}

// ---- training ----------------------------------------------------------------------------
// Per-image rows of the whole batch (row n of each array belongs to image n).
struct Batch {
    float* h4;        // (N,400)  S4 output = C5 input
    float* h5;        // (N,120)
    float* h6;        // (N,84)
    float* da5;       // (N,120)  dE/d(C5 pre-activation)
    float* da6;       // (N,84)
    float* gy;        // (N,10)   dE/dy
    float* y;         // (N,10)   penalties
    double* part;     // (blocks, partial_size(T))
    double* loss;     // (blocks,) sum of s E over the block's images
    int64_t* errors;  // (blocks,) argmin(y) != label
};

// Per thread: a block's C1..C3 activations, then one image's backward buffers. The
// buffers marked "zero" have junk columns or borders that must stay zero: only their
// interior is ever written, so they keep the zeros of the first allocation.
struct TrainWs {
    static constexpr int64_t kH1 = kM1 * kFlat1, kH2 = kN2, kH3 = kN3;
    float* h1;    // (kBlock, 6*896)
    float* h2;    // (kBlock, 1176)
    float* h3;    // (kBlock, 1600)
    float* s2;    // 6*224 scratch
    float* c3;    // 16*140 scratch
    float* dh4;   // (kBlock, 400)
    float* dh5;   // (kBlock, 120)
    float* dh6;   // 84
    float* da4;   // 400
    float* dh3;   // 1600
    float* da3;   // 1600
    float* da3f;  // 16*140, zero junk: C3's output gradient, flat, for its weight gradient
    float* dy3p;  // 16*324, zero border: the same, zero-padded, for its input gradient
    float* dh2f;  // 6*252: C3's input gradient, flat (row stride 18)
    float* da2w;  // 6*224, zero junk: S2's output gradient on (14,16) planes
    float* dh1;   // 6*896: S2's input gradient on C1's flat planes
    float* da1;   // 6*896
    float* dw;    // 25*96: one image's kernel gradients

    explicit TrainWs(std::vector<float>& mem) {
        const int64_t sizes[] = {kBlock * kH1,
                                 kBlock * kH2,
                                 kBlock * kH3,
                                 kM1 * kFlatS2,
                                 kM3 * kFlat3,
                                 kBlock * kN4,
                                 kBlock * kC5,
                                 kF6,
                                 kN4,
                                 kN3,
                                 kN3,
                                 kM3 * kFlat3,
                                 kM3 * kPadPlane3,
                                 kM1 * kFlatB3,
                                 kM1 * kFlatS2,
                                 kH1,
                                 kH1,
                                 kMaxPairs * kKK};
        float** ptrs[] = {&h1,  &h2,  &h3,   &s2,   &c3,   &dh4,  &dh5, &dh6, &da4,
                          &dh3, &da3, &da3f, &dy3p, &dh2f, &da2w, &dh1, &da1, &dw};
        int64_t total = 0;
        for (int64_t n : sizes) total += (n + 15) / 16 * 16;  // 64-byte steps
        if (mem.size() < static_cast<size_t>(total)) mem.assign(static_cast<size_t>(total), 0.0f);
        int64_t at = 0;
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); ++i) {
            *ptrs[i] = mem.data() + at;
            at += (sizes[i] + 15) / 16 * 16;
        }
    }
};

TrainWs train_workspace() {
    thread_local std::vector<float> mem;
    return TrainWs(mem);
}

// Per thread: KernelTable::train8_forward's activations, kept for train8_backward (285 KB),
// 32-byte aligned.
float* lanes_workspace() {
    thread_local std::vector<float> mem;
    if (mem.empty()) mem.assign(static_cast<size_t>(kTrain8Floats + 8), 0.0f);
    const auto at = reinterpret_cast<uintptr_t>(mem.data()) % 32;
    return mem.data() + (at ? (32 - at) / sizeof(float) : 0);
}

// One image's backward pass from dh4 (400) down to C1, adding its gradients to part.
void backward_convs(double* part, const float* dh4, const float* xi, const float* h1,
                    const float* h2, const float* h3, const float* h4, const Plan& plan,
                    const KernelTable& kt, const TrainWs& w) {
    constexpr int64_t P2 = kS2 * kS2, P3 = kS3 * kS3, P4 = P3 / 4;
    const float* dyk[kM3];
    float* dwk[kM3];
    float* planes[kM1];
    // S4: dh3 = coef x da4 over each block; dcoef = sum da4 x (block sums of h3)
    kt.squash_backward(w.da4, h4, dh4, kN4);
    for (int64_t c = 0; c < kM3; ++c) {
        part[kPS4C + c] += kt.subsample_backward_plane(w.dh3 + c * P3, h3 + c * P3, w.da4 + c * P4,
                                                       plan.coef4[c], kS3, kS3);
        part[kPS4B + c] += kt.sum_floats(w.da4 + c * P4, P4);
    }
    // C3: bias; then da3 to its flat (zero junk) and padded (zero border) planes
    kt.squash_backward(w.da3, h3, w.dh3, kN3);
    for (int64_t k = 0; k < kM3; ++k) {
        part[kPC3B + k] += kt.sum_floats(w.da3 + k * P3, P3);
        for (int64_t i = 0; i < kS3; ++i) {
            const float* row = w.da3 + k * P3 + i * kS3;
            float* flat = w.da3f + k * kFlat3 + i * kS2;
            float* padded = w.dy3p + k * kPadPlane3 + (i + kK - 1) * kPad3 + (kK - 1);
            for (int64_t j = 0; j < kS3; ++j) flat[j] = padded[j] = row[j];
        }
    }
    // C3's kernel gradients: per input map c, its output maps' gradients against it
    for (int64_t c = 0; c < kM1; ++c) {
        for (int j = 0; j < plan.c3n[c]; ++j) {
            dyk[j] = w.da3f + plan.c3k[c][j] * kFlat3;
            dwk[j] = w.dw + plan.c3t[c][j] * kKK;
        }
        kt.conv_dw_flat(dwk, dyk, plan.c3n[c], h2 + c * P2, kS2, kFlatL3, kK, kK);
    }
    double* pw = part + kPC3W;
    for (int64_t q = 0; q < plan.T * kKK; ++q) pw[q] += w.dw[q];
    // C3's input gradient: the padded output gradient through the rotated kernels, over
    // its non-zero rows (padded rows 4 .. 13) only
    std::fill(w.dh2f, w.dh2f + kM1 * kFlatB3, 0.0f);
    for (int64_t k = 0; k < kM3; ++k) {
        for (int j = 0; j < plan.bn[k]; ++j) planes[j] = w.dh2f + plan.bc[k][j] * kFlatB3;
        kt.conv_acc_rows(planes, plan.bw[k], plan.bn[k], w.dy3p + k * kPadPlane3, kPad3, kS2, kS2,
                         kK, kK, kK - 1, kK - 1 + kS3 - 1);
    }
    // S2: da2 onto (14,16) planes (zero junk), then back onto C1's flat planes
    for (int64_t c = 0; c < kM1; ++c) {
        for (int64_t i = 0; i < kS2; ++i) {
            float* da = w.da2w + c * kFlatS2 + i * kS2W;
            kt.squash_backward(da, h2 + c * P2 + i * kS2, w.dh2f + c * kFlatB3 + i * kPad3, kS2);
            part[kPS2B + c] += kt.sum_floats(da, kS2);
        }
        part[kPS2C + c] += kt.subsample_backward_plane(
            w.dh1 + c * kFlat1, h1 + c * kFlat1, w.da2w + c * kFlatS2, plan.coef2[c], kS1, kIn);
    }
    // C1: bias and kernel gradients (no input gradient); da1's junk columns are zero
    // because dh1's are (S2's zero junk gradient times its coefficient)
    kt.squash_backward(w.da1, h1, w.dh1, kM1 * kFlat1);
    for (int64_t k = 0; k < kM1; ++k) {
        part[kPC1B + k] += kt.sum_floats(w.da1 + k * kFlat1, kFlat1);
        dyk[k] = w.da1 + k * kFlat1;
        dwk[k] = w.dw + k * kKK;
    }
    kt.conv_dw_flat(dwk, dyk, kM1, xi, kIn, kFlatL1, kK, kK);
    for (int64_t q = 0; q < kM1 * kKK; ++q) part[kPC1W + q] += w.dw[q];
}

// Block b of the batch: images n0 .. n0+nb-1 forward, loss, and backward; the per-image
// rows go to B, the block's partial gradients to B.part + b * partial_size(T).
void train_block(const Batch& B, int64_t b, int64_t n0, int64_t nb, int64_t N,
                 const float* const* p, const float* x, const int64_t* labels, const Plan& plan,
                 const LossOptions& opt, const KernelTable& kt) {
    const TrainWs w = train_workspace();
    constexpr int64_t H1 = TrainWs::kH1, H2 = TrainWs::kH2, H3 = TrainWs::kH3;
    float* h4 = B.h4 + n0 * kN4;
    float* h5 = B.h5 + n0 * kC5;
    float* h6 = B.h6 + n0 * kF6;
    float* da5 = B.da5 + n0 * kC5;
    float* da6 = B.da6 + n0 * kF6;
    float* gy = B.gy + n0 * kOut;
    float* y = B.y + n0 * kOut;
    const float* xb = x + n0 * kIn * kIn;
    // C1 .. S4 in lanes (KernelTable::train8_forward/backward) for the blocks the inference
    // would run in lanes; image by image otherwise (the SDLM pass's single patterns)
    float* lanes = kt.train8_forward != nullptr && nb >= kLanesMin ? lanes_workspace() : nullptr;
    if (lanes != nullptr) {
        kt.train8_forward(h4, xb, nb, plan.lanes, lanes);
    } else {
        for (int64_t n = 0; n < nb; ++n)
            forward_convs({w.h1 + n * H1, w.s2, w.h2 + n * H2, w.c3, w.h3 + n * H3, h4 + n * kN4},
                          p, xb + n * kIn * kIn, plan, kt);
    }
    forward_head(y, h5, h6, h4, p, nb, kt);
    double loss = 0.0;
    int64_t errors = 0;
    for (int64_t n = 0; n < nb; ++n) {
        const int64_t label = labels[n0 + n];
        errors += argmin_like_numpy(y + n * kOut, kOut) != label;
        loss += loss_gradient(gy + n * kOut, y + n * kOut, label, opt, N);
        // RBF: dh6 = 2 sum_i gy_i (h6 - c_i), as rbf_backward; then F6's squashing
        rbf_input_gradient(w.dh6, gy + n * kOut, h6 + n * kF6, p[kRbfC], kOut, kF6, kt);
        kt.squash_backward(da6 + n * kF6, h6 + n * kF6, w.dh6, kF6);
    }
    B.loss[b] = loss;
    B.errors[b] = errors;
    // F6 and C5: input gradients of the block as products with the weights
    kt.matmul(w.dh5, da6, kF6, 1, p[kF6W], nb, kF6, kC5);
    kt.squash_backward(da5, h5, w.dh5, nb * kC5);
    kt.matmul(w.dh4, da5, kC5, 1, p[kC5W], nb, kC5, kN4);
    double* part = B.part + b * partial_size(plan.T);
    std::fill(part, part + partial_size(plan.T), 0.0);
    if (lanes != nullptr) return kt.train8_backward(part, w.dh4, nb, plan.lanes, lanes);
    for (int64_t n = 0; n < nb; ++n)
        backward_convs(part, w.dh4 + n * kN4, xb + n * kIn * kIn, w.h1 + n * H1, w.h2 + n * H2,
                       w.h3 + n * H3, h4 + n * kN4, plan, kt, w);
}

// The gradients g of the whole batch from its blocks' rows and partials.
void reduce_gradients(float* const* g, const Batch& B, int64_t N, int64_t blocks,
                      const float* const* p, const Plan& plan, bool subsample_mean,
                      const KernelTable& kt) {
    const int64_t T = plan.T, ps = partial_size(T);
    // C5 and F6: dw = da^T h over the batch, by blocks of output rows; db = sum of da.
    // Left out when g[kC5W] is null (the SDLM pass applies them as it computes them).
    constexpr int64_t kRows = 8;
    const int64_t c5_blocks = kC5 / kRows, f6_blocks = (kF6 + kRows - 1) / kRows;
    if (g[kC5W] != nullptr)
        parallel_for(c5_blocks + f6_blocks, N * kRows * kN4, [&](int64_t t) {
            const bool c5 = t < c5_blocks;
            const int64_t O = c5 ? kC5 : kF6, I = c5 ? kN4 : kC5;
            const int64_t o0 = (c5 ? t : t - c5_blocks) * kRows, rows = std::min(kRows, O - o0);
            const float* da = (c5 ? B.da5 : B.da6) + o0;
            kt.matmul((c5 ? g[kC5W] : g[kF6W]) + o0 * I, da, 1, O, c5 ? B.h4 : B.h5, rows, N, I);
            float* db = (c5 ? g[kC5B] : g[kF6B]) + o0;
            for (int64_t r = 0; r < rows; ++r) {
                double s = 0.0;
                for (int64_t n = 0; n < N; ++n) s += da[n * O + r];
                db[r] = static_cast<float>(s);
            }
        });
    // the centres, when trained: dc_i = -2 sum_n gy[n,i] (h6_n - c_i), as rbf_backward
    if (g[kRbfC] != nullptr) {
        for (int64_t i = 0; i < kOut; ++i)
            rbf_centre_gradient(g[kRbfC] + i * kF6, B.gy, B.h6, p[kRbfC] + i * kF6, i, N, kOut, kF6,
                                kt);
    }
    // the rest: the blocks' partials, in block order
    auto total = [&](float* out, int64_t at, int64_t n, float factor) {
        for (int64_t i = 0; i < n; ++i) {
            double s = 0.0;
            for (int64_t b = 0; b < blocks; ++b) s += B.part[b * ps + at + i];
            out[i] = static_cast<float>(s) * factor;  // x 1 is exact; x 0.25 as the model
        }
    };
    const float sub = subsample_mean ? 0.25f : 1.0f;
    total(g[kC1W], kPC1W, kM1 * kKK, 1.0f);
    total(g[kC1B], kPC1B, kM1, 1.0f);
    total(g[kS2Coef], kPS2C, kM1, sub);
    total(g[kS2Bias], kPS2B, kM1, 1.0f);
    total(g[kC3W], kPC3W, T * kKK, 1.0f);
    total(g[kC3B], kPC3B, kM3, 1.0f);
    total(g[kS4Coef], kPS4C, kM3, sub);
    total(g[kS4Bias], kPS4B, kM3, 1.0f);
}

// The Batch's storage for N images in `blocks` blocks.
struct BatchMem {
    std::vector<float> f;
    std::vector<double> d;
    std::vector<int64_t> e;
    Batch b{};
    BatchMem(int64_t N, int64_t blocks, int64_t T, float* y) {
        const int64_t row = kN4 + kC5 + kF6 + kC5 + kF6 + kOut;
        f.assign(static_cast<size_t>(N * row + (y ? 0 : N * kOut)), 0.0f);
        d.assign(static_cast<size_t>(blocks * (partial_size(T) + 1)), 0.0);
        e.assign(static_cast<size_t>(blocks), 0);
        float* at = f.data();
        auto take = [&](int64_t n) {
            float* r = at;
            at += N * n;
            return r;
        };
        b.h4 = take(kN4);
        b.h5 = take(kC5);
        b.h6 = take(kF6);
        b.da5 = take(kC5);
        b.da6 = take(kF6);
        b.gy = take(kOut);
        b.y = y ? y : take(kOut);
        b.loss = d.data();
        b.part = d.data() + blocks;
        b.errors = e.data();
    }
};

}  // namespace

int64_t lenet_param_size(int param, int64_t c3_pairs) {
    switch (param) {
        case kC1W: return kM1 * kKK;
        case kC1B:
        case kS2Coef:
        case kS2Bias: return kM1;
        case kC3W: return c3_pairs * kKK;
        case kC3B:
        case kS4Coef:
        case kS4Bias: return kM3;
        case kC5W: return kC5 * kN4;
        case kC5B: return kC5;
        case kF6W: return kF6 * kC5;
        case kF6B: return kF6;
        case kRbfC: return kOut * kF6;
        default: return 0;
    }
}

void network_forward(float* y, const float* const* p, const float* x, int64_t N,
                     const uint8_t* table, const ForwardOptions& opt) {
    if (N <= 0) return;
    const KernelTable& kt = active_kernels();
    const Plan plan(p, table, opt.subsample_mean, false);
    parallel_for((N + kBlock - 1) / kBlock, kBlock * kImageCost, [&](int64_t blk) {
        const int64_t n0 = blk * kBlock;
        forward_block(y + n0 * kOut, p, x + n0 * kIn * kIn, std::min(kBlock, N - n0), plan, kt,
                      forward_workspace());
    });
}

GradResult network_gradients(float* const* g, float* y, const float* const* p, const float* x,
                             const int64_t* labels, int64_t N, const uint8_t* table,
                             const LossOptions& opt) {
    GradResult res;
    if (N <= 0) return res;
    const KernelTable& kt = active_kernels();
    const Plan plan(p, table, opt.subsample_mean, true);
    const int64_t blocks = (N + kBlock - 1) / kBlock;
    BatchMem mem(N, blocks, plan.T, y);
    const Batch& B = mem.b;
    parallel_for(blocks, kBlock * kImageTrainCost, [&](int64_t b) {
        const int64_t n0 = b * kBlock;
        train_block(B, b, n0, std::min(kBlock, N - n0), N, p, x, labels, plan, opt, kt);
    });
    reduce_gradients(g, B, N, blocks, p, plan, opt.subsample_mean, kt);
    for (int64_t b = 0; b < blocks; ++b) {
        res.loss_sum += B.loss[b];
        res.errors += B.errors[b];
    }
    return res;
}

SdlmResult sdlm_pass(const SdlmNet& net, const float* x, const int64_t* labels,
                     const int64_t* order, int64_t P, const uint8_t* table,
                     const LossOptions& opt) {
    const SerialScope serial;  // one pattern at a time: too little work for a thread team
    const KernelTable& kt = active_kernels();
    SdlmResult res;
    if (P <= 0) return res;
    const float* const* p = net.p;
    Plan plan(p, table, opt.subsample_mean, true);
    const int64_t T = plan.T;
    BatchMem mem(1, 1, T, nullptr);
    std::vector<float> gmem;
    int64_t gsize = 0;
    for (int q = 0; q < kNumLeNetParams; ++q) gsize += lenet_param_size(q, T);
    gmem.assign(static_cast<size_t>(gsize), 0.0f);
    float* g[kNumLeNetParams];
    float* at = gmem.data();
    for (int q = 0; q < kNumLeNetParams; ++q) {
        g[q] = at;
        at += lenet_param_size(q, T);
    }
    if (net.step[kRbfC] == nullptr) g[kRbfC] = nullptr;
    for (int q : {kC5W, kC5B, kF6W, kF6B}) g[q] = nullptr;  // applied row by row below
    const Batch& B = mem.b;
    for (int64_t t = 0; t < P; ++t) {
        const int64_t idx = order[t];
        if (t > 0) plan.refresh(p, opt.subsample_mean, true);  // the parameters moved
        train_block(B, 0, 0, 1, 1, p, x + idx * kIn * kIn, labels + idx, plan, opt, kt);
        reduce_gradients(g, B, 1, 1, p, plan, opt.subsample_mean, kt);
        res.loss_sum += B.loss[0];
        res.errors += B.errors[0];
        // train.py: params[name] -= steps[name] * grad[name], a multiply rounded to float,
        // then a subtraction (no FMA contraction in this file). C5 and F6 (97% of the
        // parameters) in one sweep over their weights: at batch 1 their gradient is the
        // outer product da x (float products, as KernelTable::matmul gives them) and their bias
        // gradient da itself.
        for (int q = 0; q < kNumLeNetParams; ++q) {
            if (net.step[q] == nullptr || g[q] == nullptr) continue;
            float* pq = net.p[q];
            const float* sq = net.step[q];
            const float* gq = g[q];
            for (int64_t i = 0, n = lenet_param_size(q, T); i < n; ++i) pq[i] -= sq[i] * gq[i];
        }
        for (int c5 = 0; c5 < 2; ++c5) {
            const int64_t O = c5 ? kC5 : kF6, I = c5 ? kN4 : kC5;
            const float* da = c5 ? B.da5 : B.da6;
            const float* h = c5 ? B.h4 : B.h5;
            float* w = net.p[c5 ? kC5W : kF6W];
            float* bias = net.p[c5 ? kC5B : kF6B];
            const float* sw = net.step[c5 ? kC5W : kF6W];
            const float* sb = net.step[c5 ? kC5B : kF6B];
            for (int64_t o = 0; o < O; ++o) {
                kt.outer_update(w + o * I, sw + o * I, h, da[o], I);
                bias[o] -= sb[o] * da[o];
            }
        }
    }
    return res;
}

}  // namespace lenet_fast
