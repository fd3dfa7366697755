// The fused network's training internals (gradients.cpp, shared with sdlm.cpp): the
// per-image rows of a batch, one block's forward, loss and backward, and the reduction of
// the blocks' gradients.
#pragma once

#include <cstdint>
#include <vector>

#include "../isa.h"
#include "../network.h"
#include "plan.h"

namespace lenet_fast {
namespace fused {

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

// Block b of the batch: images n0 .. n0+nb-1 forward, loss, and backward; the per-image
// rows go to B, the block's partial gradients to B.part + b * partial_size(T).
void train_block(const Batch& B, int64_t b, int64_t n0, int64_t nb, int64_t N,
                 const float* const* p, const float* x, const int64_t* labels, const Plan& plan,
                 const LossOptions& opt, const KernelTable& kt);

// The gradients g of the whole batch from its blocks' rows and partials.
void reduce_gradients(float* const* g, const Batch& B, int64_t N, int64_t blocks,
                      const float* const* p, const Plan& plan, bool subsample_mean,
                      const KernelTable& kt);

}  // namespace fused
}  // namespace lenet_fast
