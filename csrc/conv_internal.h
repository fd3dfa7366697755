// Shared by the dense (conv2d.cpp) and sparse (sparse_conv.cpp) convolutions: both are a
// list, per output map, of (input map, kernel) pairs, and both back-propagate to the input
// as a forward convolution of the zero-padded dy with the rotated kernels over the
// transposed list.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels.h"

namespace lenet_fast {

// For output map k: pairs begin[k] .. begin[k+1]-1, input map cidx[p], kernel widx[p].
struct PairList {
    std::vector<int32_t> begin, cidx, widx;
};

// The dense list: output k reads every input c with kernel k*C + c.
PairList dense_pairs(int64_t C, int64_t K);

// The list of a connection table (C,K), nonzero = connected: output k reads the connected
// c ascending; kernels numbered in list order (by k, then c), as sparse_conv2d's w is packed.
PairList table_pairs(const uint8_t* table, int64_t C, int64_t K);

// The same connections seen from the inputs: for input c, the (output k, kernel) pairs.
PairList transpose_pairs(const PairList& pl, int64_t C);

// y (N,K,Ho,Wo) = b + sum over k's pairs of correlation(x[:,c], w[t]); b may be null.
void conv_pairs_forward(float* y, const float* x, const float* w, const float* b,
                        const ConvShape& s, const PairList& pl);

// dx (N,C,H,W), dw (T,R,S), db (K,) for conv_pairs_forward; T = pl.cidx.size(). dx may be
// null: no input gradient.
void conv_pairs_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                         const float* dy, const ConvShape& s, const PairList& pl);

}  // namespace lenet_fast
