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

}  // namespace lenet_fast
