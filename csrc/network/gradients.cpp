// The gradients of a batch (network_gradients): the loss, one block's backward (image by
// image on the flat planes, or in lanes), and the blocks' gradients reduced in block order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../backprop.h"
#include "../dispatch.h"
#include "../kernels.h"
#include "../network.h"
#include "plan.h"
#include "train.h"

namespace lenet_fast {

using namespace fused;  // NOLINT(build/namespaces): the network's own internals

namespace {

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

}  // namespace

namespace fused {

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

}  // namespace fused

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

}  // namespace lenet_fast
