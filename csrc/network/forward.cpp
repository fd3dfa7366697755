// Inference (network_forward) and the forward of C1 .. S4 and C5 .. RBF that training
// shares (plan.h).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../dispatch.h"
#include "../kernels.h"
#include "../network.h"
#include "plan.h"

namespace lenet_fast {

using namespace fused;  // NOLINT(build/namespaces): the network's own internals

namespace fused {

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

void forward_head(float* y, float* h5, float* h6, const float* h4, const float* const* p,
                  int64_t nb, const KernelTable& kt) {
    kt.linear_rows(h5, h4, p[kC5W], p[kC5B], nb, kN4, kC5);
    kt.squash(h5, h5, nb * kC5);
    kt.linear_rows(h6, h5, p[kF6W], p[kF6B], nb, kC5, kF6);
    kt.squash(h6, h6, nb * kF6);
    kt.rbf_rows(y, h6, p[kRbfC], nb, kOut, kF6);
}

}  // namespace fused

namespace {

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

}  // namespace lenet_fast
