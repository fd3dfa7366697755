// Sparse convolution driven by a connection table (C3 with the paper's Table I).
// The table becomes a pair list once per call; the loops are conv2d.cpp's. Kernels are
// packed (T,R,S) in the order of the list: by output map k, then input map c ascending.
#include "conv_internal.h"
#include "kernels.h"

namespace lenet_fast {

PairList table_pairs(const uint8_t* table, int64_t C, int64_t K) {
    PairList pl;
    pl.begin.reserve(K + 1);
    for (int64_t k = 0; k < K; ++k) {
        pl.begin.push_back(static_cast<int32_t>(pl.cidx.size()));
        for (int64_t c = 0; c < C; ++c)
            if (table[c * K + k]) {
                pl.widx.push_back(static_cast<int32_t>(pl.cidx.size()));
                pl.cidx.push_back(static_cast<int32_t>(c));
            }
    }
    pl.begin.push_back(static_cast<int32_t>(pl.cidx.size()));
    return pl;
}

void sparse_conv2d_forward(float* y, const float* x, const float* w, const float* b,
                           const uint8_t* table, const ConvShape& s) {
    conv_pairs_forward(y, x, w, b, s, table_pairs(table, s.C, s.K));
}

void sparse_conv2d_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                            const float* dy, const uint8_t* table, const ConvShape& s) {
    conv_pairs_backward(dx, dw, db, x, w, dy, s, table_pairs(table, s.C, s.K));
}

}  // namespace lenet_fast
