// One SDLM pass (sdlm_pass): per pattern, the gradients of gradients.cpp on that pattern
// alone, then the update, so that train.py's Python loop (model.gradients, then
// params -= steps * g) gives its bits.
#include <cstdint>
#include <vector>

#include "../dispatch.h"
#include "../kernels.h"
#include "../network.h"
#include "plan.h"
#include "train.h"

namespace lenet_fast {

using namespace fused;  // NOLINT(build/namespaces): the network's own internals

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
