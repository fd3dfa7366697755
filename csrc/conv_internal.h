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

// dx (N,C,H,W), dw (T,R,S), db (K,) for conv_pairs_forward; T = pl.cidx.size().
// Allocates its scratch; the variant below takes it from the caller.
void conv_pairs_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                         const float* dy, const ConvShape& s, const PairList& pl);

// The scratch of the dx part of conv_pairs_backward, for callers that run it many times on
// one shape (the fused training pass, network.cpp) and must not allocate per call.
struct ConvBackScratch {
    PairList tpl;            // transpose_pairs(pl, C)
    std::vector<float> dyp;  // (N,K,Ho+2(R-1),Wo+2(S-1)): dy zero-padded; borders stay zero
    std::vector<float> wr;   // (T,R,S): the kernels rotated by 180 degrees
    ConvBackScratch(const ConvShape& s, const PairList& pl);
};

// As conv_pairs_backward, with the caller's scratch (made for shape s and list pl). dx may
// be null: no input gradient (C1 needs none), and then scratch may be null too.
void conv_pairs_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                         const float* dy, const ConvShape& s, const PairList& pl,
                         ConvBackScratch* scratch);

}  // namespace lenet_fast
