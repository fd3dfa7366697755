// One SDLM pass of LeNet-5 in C++ (see network.h): the per-pattern loop of train.py's
// _sdlm_pass, with every activation and gradient in one workspace allocated before the
// loop. The layers are the kernel drivers of kernels.h / conv_internal.h at batch 1, called
// in model.py's order, so a pattern gives the bits of the Python loop with the fast backend.
// One exception, with the same bits: F6 and C5 (97% of the parameters) fuse their backward
// with their update in one sweep over the weights (linear_backward_update).
#include "network.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "conv_internal.h"
#include "dispatch.h"
#include "kernels.h"

namespace lenet_fast {
namespace {

// Layer sizes (paper II-B). C5 is a 5x5 kernel over a 5x5 input: a full connection over
// (16,5,5), as conv2d_forward/backward treat it.
constexpr int64_t kIn = 32, kK = 5;
constexpr int64_t kM1 = 6, kS1 = 28;   // C1 maps, side (S2: 14)
constexpr int64_t kM3 = 16, kS3 = 10;  // C3 maps, side (S4: 5)
constexpr int64_t kC5 = 120, kF6 = 84, kOut = 10;
constexpr int64_t kN1 = kM1 * kS1 * kS1, kN2 = kN1 / 4;  // 4704, 1176
constexpr int64_t kN3 = kM3 * kS3 * kS3, kN4 = kN3 / 4;  // 1600, 400

const ConvShape kShapeC1{1, 1, kIn, kIn, kM1, kK, kK};
const ConvShape kShapeC3{1, kM1, kS1 / 2, kS1 / 2, kM3, kK, kK};

// F6's and C5's parameters are updated during the backward pass (linear_backward_update).
bool updated_in_backward(int q) { return q == kF6W || q == kF6B || q == kC5W || q == kC5B; }

// Every buffer of one pattern's forward and backward pass, allocated once.
class Workspace {
  public:
    explicit Workspace(const uint8_t* table)
        : c1_pairs_(dense_pairs(1, kM1)),
          c3_pairs_(table_pairs(table, kM1, kM3)),
          c3_back_(kShapeC3, c3_pairs_) {
        const int64_t T = static_cast<int64_t>(c3_pairs_.cidx.size());
        int64_t total = 0;
        auto reserve = [&](int64_t n) {
            const int64_t at = total;
            total += (n + 15) / 16 * 16;  // 64-byte steps: no two buffers share a cache line
            return at;
        };
        int64_t at[kNumBuffers], g_at[kNumLeNetParams];
        for (int b = 0; b < kNumBuffers; ++b) at[b] = reserve(kBufferSize[b]);
        for (int q = 0; q < kNumLeNetParams; ++q)
            g_at[q] = updated_in_backward(q) ? -1 : reserve(lenet_param_size(q, T));
        mem_.assign(static_cast<size_t>(total), 0.0f);
        for (int b = 0; b < kNumBuffers; ++b) buf_[b] = mem_.data() + at[b];
        // grad[kRbfC] exists for fixed centres too: rbf_backward always writes it. F6 and
        // C5 have none: linear_backward_update applies their gradient as it computes it.
        for (int q = 0; q < kNumLeNetParams; ++q)
            grad[q] = g_at[q] < 0 ? nullptr : mem_.data() + g_at[q];
    }

    // Buffers of one pattern: a = layer output before f, h = after f, d = gradients.
    enum Buffer {
        A1, H1, A2, H2, A3, H3, A4, H4, A5, H5, A6, H6, Y, GY,
        DH6, DA6, DH5, DA5, DH4, DA4, DH3, DA3, DH2, DA2, DH1, DA1, COEF2, COEF4,
        kNumBuffers
    };
    float* operator[](Buffer b) { return buf_[b]; }

    const PairList c1_pairs_, c3_pairs_;
    ConvBackScratch c3_back_;
    float* grad[kNumLeNetParams] = {};

  private:
    static constexpr int64_t kBufferSize[kNumBuffers] = {
        kN1, kN1, kN2, kN2, kN3, kN3, kN4, kN4, kC5, kC5, kF6, kF6, kOut, kOut,
        kF6, kF6, kC5, kC5, kN4, kN4, kN3, kN3, kN2, kN2, kN1, kN1, kM1, kM3};
    std::vector<float> mem_;
    float* buf_[kNumBuffers] = {};
};

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

// LeNet5.loss_gradient at batch 1: E (returned) and gy = dE/dy (10,).
double loss_gradient(float* gy, const float* y, int64_t label, const SdlmOptions& opt) {
    const double scale = opt.loss_scale;
    if (!opt.map_loss) {  // Eq. 8: E = s y_label
        for (int64_t i = 0; i < kOut; ++i) gy[i] = 0.0f;
        gy[label] = static_cast<float>(scale);
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
        gy[i] = static_cast<float>(g * scale);
    }
    return scale * loss;
}

// p -= step * g, element-wise: a multiply rounded to float, then a subtract (the numpy
// expression's two roundings; no FMA contraction in this file). The compiler vectorises it.
void update(float* p, const float* step, const float* g, int64_t n) {
    for (int64_t i = 0; i < n; ++i) p[i] -= step[i] * g[i];
}

// The backward of a full connection y (O) = w (O,I) x (I) + b at batch 1, fused with the
// SDLM update of w and b: one sweep over the rows of w instead of three (linear_backward's
// dx and dw, then the update), which matters for C5's 48,000 weights. Bit for bit what
// linear_backward then the update give: dx = sum over o ascending of dy[o] w[o,:] (axpy's
// arithmetic, with each row read before it is updated); dw[o,i] = dy[o] x[i]
// (linear_backward's fma(dy, x, 0) at batch 1 is this rounded product); db[o] = dy[o] (a
// one-term double sum).
void linear_backward_update(float* dx, float* w, float* b, const float* x, const float* dy,
                            const float* step_w, const float* step_b, int64_t I, int64_t O) {
    const Isa& isa = active_isa();
    std::fill(dx, dx + I, 0.0f);
    for (int64_t o = 0; o < O; ++o) {
        float* wo = w + o * I;
        const float d = dy[o];
        isa.linear_row_update(dx, wo, step_w + o * I, x, d, I);
        b[o] -= step_b[o] * d;
    }
}

}  // namespace

int64_t lenet_param_size(int param, int64_t c3_pairs) {
    switch (param) {
        case kC1W: return kM1 * kK * kK;
        case kC1B: case kS2Coef: case kS2Bias: return kM1;
        case kC3W: return c3_pairs * kK * kK;
        case kC3B: case kS4Coef: case kS4Bias: return kM3;
        case kC5W: return kC5 * kN4;
        case kC5B: return kC5;
        case kF6W: return kF6 * kC5;
        case kF6B: return kF6;
        case kRbfC: return kOut * kF6;
        default: return 0;
    }
}

SdlmResult sdlm_pass(const SdlmNet& net, const float* x, const int64_t* labels,
                     const int64_t* order, int64_t P, const uint8_t* table,
                     const SdlmOptions& opt) {
    using W = Workspace;
    const SerialScope serial;  // ~30 kernels of a few microseconds per pattern: no threads
    Workspace ws(table);
    const int64_t T = static_cast<int64_t>(ws.c3_pairs_.cidx.size());
    float* const* p = net.p;
    float* const* g = ws.grad;
    const float sub = opt.subsample_mean ? 0.25f : 1.0f;  // "mean": the kernel sees coef/4
    SdlmResult res;

    for (int64_t t = 0; t < P; ++t) {
        const int64_t idx = order[t], label = labels[idx];
        const float* xi = x + idx * kIn * kIn;
        float* coef2 = ws[W::COEF2];
        float* coef4 = ws[W::COEF4];
        for (int64_t c = 0; c < kM1; ++c) coef2[c] = p[kS2Coef][c] * sub;  // x 1 is exact
        for (int64_t c = 0; c < kM3; ++c) coef4[c] = p[kS4Coef][c] * sub;

        // ---- forward (LeNet5._forward)
        conv_pairs_forward(ws[W::A1], xi, p[kC1W], p[kC1B], kShapeC1, ws.c1_pairs_);
        squash_forward(ws[W::H1], ws[W::A1], kN1);
        subsample_forward(ws[W::A2], ws[W::H1], coef2, p[kS2Bias], 1, kM1, kS1, kS1);
        squash_forward(ws[W::H2], ws[W::A2], kN2);
        conv_pairs_forward(ws[W::A3], ws[W::H2], p[kC3W], p[kC3B], kShapeC3, ws.c3_pairs_);
        squash_forward(ws[W::H3], ws[W::A3], kN3);
        subsample_forward(ws[W::A4], ws[W::H3], coef4, p[kS4Bias], 1, kM3, kS3, kS3);
        squash_forward(ws[W::H4], ws[W::A4], kN4);
        linear_forward(ws[W::A5], ws[W::H4], p[kC5W], p[kC5B], 1, kN4, kC5);
        squash_forward(ws[W::H5], ws[W::A5], kC5);
        linear_forward(ws[W::A6], ws[W::H5], p[kF6W], p[kF6B], 1, kC5, kF6);
        squash_forward(ws[W::H6], ws[W::A6], kF6);
        rbf_forward(ws[W::Y], ws[W::H6], p[kRbfC], 1, kOut, kF6);

        // ---- error before the update, loss and dE/dy (LeNet5.loss_gradient)
        res.errors += argmin_like_numpy(ws[W::Y], kOut) != label;
        res.loss_sum += loss_gradient(ws[W::GY], ws[W::Y], label, opt);

        // ---- backward (LeNet5._backward)
        rbf_backward(ws[W::DH6], g[kRbfC], ws[W::H6], p[kRbfC], ws[W::GY], 1, kOut, kF6);
        squash_backward(ws[W::DA6], ws[W::H6], ws[W::DH6], kF6);
        // F6 and C5 (a full connection over (16,5,5)) update their weights as they go
        linear_backward_update(ws[W::DH5], p[kF6W], p[kF6B], ws[W::H5], ws[W::DA6],
                               net.step[kF6W], net.step[kF6B], kC5, kF6);
        squash_backward(ws[W::DA5], ws[W::H5], ws[W::DH5], kC5);
        linear_backward_update(ws[W::DH4], p[kC5W], p[kC5B], ws[W::H4], ws[W::DA5],
                               net.step[kC5W], net.step[kC5B], kN4, kC5);
        squash_backward(ws[W::DA4], ws[W::H4], ws[W::DH4], kN4);
        subsample_backward(ws[W::DH3], g[kS4Coef], g[kS4Bias], ws[W::H3], coef4, ws[W::DA4], 1,
                           kM3, kS3, kS3);
        squash_backward(ws[W::DA3], ws[W::H3], ws[W::DH3], kN3);
        conv_pairs_backward(ws[W::DH2], g[kC3W], g[kC3B], ws[W::H2], p[kC3W], ws[W::DA3],
                            kShapeC3, ws.c3_pairs_, &ws.c3_back_);
        squash_backward(ws[W::DA2], ws[W::H2], ws[W::DH2], kN2);
        subsample_backward(ws[W::DH1], g[kS2Coef], g[kS2Bias], ws[W::H1], coef2, ws[W::DA2], 1,
                           kM1, kS1, kS1);
        squash_backward(ws[W::DA1], ws[W::H1], ws[W::DH1], kN1);
        conv_pairs_backward(nullptr, g[kC1W], g[kC1B], xi, p[kC1W], ws[W::DA1], kShapeC1,
                            ws.c1_pairs_, nullptr);
        if (opt.subsample_mean) {
            for (int64_t c = 0; c < kM1; ++c) g[kS2Coef][c] *= sub;
            for (int64_t c = 0; c < kM3; ++c) g[kS4Coef][c] *= sub;
        }

        // ---- update (train.py: params[name] -= steps[name] * grad[name]); F6, C5 done above
        for (int q = 0; q < kNumLeNetParams; ++q)
            if (!updated_in_backward(q) && net.step[q] != nullptr)
                update(p[q], net.step[q], g[q], lenet_param_size(q, T));
    }
    return res;
}


namespace {

// The buffers of the forward pass. F holds C1's, then C3's, planes in the flat layout of
// Isa::conv_acc_flat (row stride the input's width: 32 for C1, 14 for C3). C1's planes are
// squashed there, junk columns and all, and S2 reads them as (28,32) planes, writing
// (14,16) maps to B0 that are compacted into B1 (1176) and squashed. C3's planes are
// compacted into B0 (1600) and squashed; S4 writes the image's row of B4. Each squash is in
// place (it is element-wise). A block of up to kBlock images goes through the convolutions
// one image at a time, then through C5, F6 and the RBF together (B4, B5, B6: the block's
// S4, C5 and F6 outputs), so that C5's 192 KB of weights are read once per block, not once
// per image (linear_rows takes the rows by threes). 12,984 floats (51 KB) per thread.
constexpr int64_t kS2 = kS1 / 2, kS2W = kIn / 2;  // S2's maps: 14 wide, 16 on flat planes
constexpr int64_t kFlat1 = kS1 * kIn, kFlatL1 = (kS1 - 1) * kIn + kS1;  // 896, 892
constexpr int64_t kFlat3 = kS3 * kS2, kFlatL3 = (kS3 - 1) * kS2 + kS3;  // 140, 136
constexpr int64_t kFwdF = std::max(kM1 * kFlat1, kM3 * kFlat3);
constexpr int64_t kFwdB0 = std::max(kM1 * kS2 * kS2W, kN3), kFwdB1 = kN2;
constexpr int64_t kBlock = 8;
constexpr int64_t kFwdB4 = kBlock * kN4, kFwdB5 = kBlock * kC5, kFwdB6 = kBlock * kF6;
constexpr int64_t kFwdFloats = kFwdF + kFwdB0 + kFwdB1 + kFwdB4 + kFwdB5 + kFwdB6;

// The per-thread workspace: grown once per thread, then reused by every later call.
float* forward_workspace() {
    thread_local std::vector<float> mem;
    if (mem.size() < static_cast<size_t>(kFwdFloats)) mem.assign(kFwdFloats, 0.0f);
    return mem.data();
}

// What every image of one call shares: the kernels of C1, C3's connections seen from its
// inputs (for input c, the output maps k ascending and their kernels: the order in which
// each output map meets its pairs in conv_plane), and the effective S2/S4 coefficients.
struct ForwardPlan {
    const float* c1w[kM1];
    int c3n[kM1] = {};
    int c3k[kM1][kM3];
    const float* c3w[kM1][kM3];
    float coef2[kM1], coef4[kM3];
};

// Rows of Wo values from planes of row stride W (flat) to compact (K,Ho,Wo).
void compact(float* y, const float* flat, int64_t K, int64_t plane, int64_t Ho, int64_t W,
             int64_t Wo) {
    for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < Ho; ++i)
            std::copy(flat + k * plane + i * W, flat + k * plane + i * W + Wo,
                      y + (k * Ho + i) * Wo);
}

// One image through C1 .. S4 into h4 (400): conv_plane's multiply-adds for C1 and C3
// (through conv_acc_flat, the same order per element), then the drivers' micro-kernels.
void forward_convs(float* h4, const float* const* p, const float* xi, const ForwardPlan& plan,
                   const Isa& isa, float* ws) {
    float* fl = ws;
    float* b0 = ws + kFwdF;
    float* b1 = b0 + kFwdB0;
    constexpr int64_t P2 = kS1 * kS1 / 4, P3 = kS3 * kS3, P4 = P3 / 4;
    float* planes[kM3];
    // C1 + squash: the six maps share each load of the input
    for (int64_t k = 0; k < kM1; ++k) planes[k] = fl + k * kFlat1;
    isa.conv_acc_flat(planes, plan.c1w, kM1, xi, kIn, kFlatL1, kK, kK, p[kC1B]);
    isa.squash(fl, fl, kM1 * kFlat1);  // the junk columns too: 14% more, but no compaction
    // S2 + squash: on the flat planes, (28,32) -> (14,16), whose rows are two full vectors
    // (a (28,28) plane's 14-wide rows are one vector and six scalars); then compacted
    for (int64_t c = 0; c < kM1; ++c)
        isa.subsample_plane(b0 + c * kS2 * kS2W, fl + c * kFlat1, plan.coef2[c], p[kS2Bias][c],
                            kS1, kIn);
    compact(b1, b0, kM1, kS2 * kS2W, kS2, kS2W, kS2);
    isa.squash(b1, b1, kN2);
    // C3 + squash: input map by input map, into every output map it feeds
    for (int64_t k = 0; k < kM3; ++k)
        std::fill(fl + k * kFlat3, fl + k * kFlat3 + kFlatL3, p[kC3B][k]);
    for (int64_t c = 0; c < kM1; ++c) {
        for (int j = 0; j < plan.c3n[c]; ++j) planes[j] = fl + plan.c3k[c][j] * kFlat3;
        isa.conv_acc_flat(planes, plan.c3w[c], plan.c3n[c], b1 + c * P2, kS2, kFlatL3, kK, kK,
                          nullptr);
    }
    compact(b0, fl, kM3, kFlat3, kS3, kS2, kS3);
    isa.squash(b0, b0, kN3);
    // S4 + squash
    for (int64_t c = 0; c < kM3; ++c)
        isa.subsample_plane(h4 + c * P4, b0 + c * P3, plan.coef4[c], p[kS4Bias][c], kS3, kS3);
    isa.squash(h4, h4, kN4);
}

// Images x (nb,1,32,32), nb <= kBlock, to their penalties y (nb,10).
void forward_block(float* y, const float* const* p, const float* x, int64_t nb,
                   const ForwardPlan& plan, const Isa& isa, float* ws) {
    float* h4 = ws + kFwdF + kFwdB0 + kFwdB1;
    float* h5 = h4 + kFwdB4;
    float* h6 = h5 + kFwdB5;
    for (int64_t n = 0; n < nb; ++n)
        forward_convs(h4 + n * kN4, p, x + n * kIn * kIn, plan, isa, ws);
    // C5 (a full connection over (16,5,5)) + squash, F6 + squash, RBF: rows as
    // linear_forward and rbf_forward compute them (the same bits at any batch size)
    isa.linear_rows(h5, h4, p[kC5W], p[kC5B], nb, kN4, kC5);
    isa.squash(h5, h5, nb * kC5);
    isa.linear_rows(h6, h5, p[kF6W], p[kF6B], nb, kC5, kF6);
    isa.squash(h6, h6, nb * kF6);
    isa.rbf_rows(y, h6, p[kRbfC], nb, kOut, kF6);
}

}  // namespace

void network_forward(float* y, const float* const* p, const float* x, int64_t N,
                     const uint8_t* table, const ForwardOptions& opt) {
    if (N <= 0) return;
    const Isa& isa = active_isa();
    ForwardPlan plan;
    for (int64_t k = 0; k < kM1; ++k) plan.c1w[k] = p[kC1W] + k * kK * kK;
    // C3's kernels are packed by output map k, then input map c (table_pairs' order)
    int64_t t = 0;
    for (int64_t k = 0; k < kM3; ++k)
        for (int64_t c = 0; c < kM1; ++c)
            if (table[c * kM3 + k]) {
                plan.c3k[c][plan.c3n[c]] = static_cast<int>(k);
                plan.c3w[c][plan.c3n[c]++] = p[kC3W] + (t++) * kK * kK;
            }
    const float sub = opt.subsample_mean ? 0.25f : 1.0f;  // model._sub_coef: coef * 0.25
    for (int64_t c = 0; c < kM1; ++c) plan.coef2[c] = p[kS2Coef][c] * sub;
    for (int64_t c = 0; c < kM3; ++c) plan.coef4[c] = p[kS4Coef][c] * sub;
    // ~330,000 multiply-adds per image
    constexpr int64_t kImageCost = 328096;
    parallel_for((N + kBlock - 1) / kBlock, kBlock * kImageCost, [&](int64_t blk) {
        const int64_t n0 = blk * kBlock;
        forward_block(y + n0 * kOut, p, x + n0 * kIn * kIn, std::min(kBlock, N - n0), plan, isa,
                      forward_workspace());
    });
}

}  // namespace lenet_fast
