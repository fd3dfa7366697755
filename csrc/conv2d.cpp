// Dense valid convolution (C1, C5) and the pair-list machinery it shares with C3.
//
// Forward: one task per (image, output map), each a call of the ISA's conv_plane.
// Backward, as two race-free loops (the result does not depend on the thread count):
//   dw, db: parallel over output maps, summing over the batch in a fixed order;
//   dx: a forward convolution of dy, zero-padded by R-1 rows and S-1 columns, with the
//       kernels rotated by 180 degrees and the connection list transposed; parallel over
//       (image, input map).
// A kernel that covers the whole input (C5 on a 5x5 map) is a full connection: those calls
// go to linear.cpp, whose loops keep every SIMD lane busy on a 1x1 output.
#include <algorithm>
#include <vector>

#include "conv_internal.h"
#include "dispatch.h"
#include "kernels.h"

namespace lenet_fast {

PairList dense_pairs(int64_t C, int64_t K) {
    PairList pl;
    pl.begin.reserve(K + 1);
    for (int64_t k = 0; k < K; ++k) {
        pl.begin.push_back(static_cast<int32_t>(pl.cidx.size()));
        for (int64_t c = 0; c < C; ++c) {
            pl.cidx.push_back(static_cast<int32_t>(c));
            pl.widx.push_back(static_cast<int32_t>(k * C + c));
        }
    }
    pl.begin.push_back(static_cast<int32_t>(pl.cidx.size()));
    return pl;
}

PairList transpose_pairs(const PairList& pl, int64_t C) {
    const int64_t K = static_cast<int64_t>(pl.begin.size()) - 1;
    PairList t;
    t.begin.reserve(C + 1);
    for (int64_t c = 0; c < C; ++c) {
        t.begin.push_back(static_cast<int32_t>(t.cidx.size()));
        for (int64_t k = 0; k < K; ++k)
            for (int32_t p = pl.begin[k]; p < pl.begin[k + 1]; ++p)
                if (pl.cidx[p] == c) {
                    t.cidx.push_back(static_cast<int32_t>(k));
                    t.widx.push_back(pl.widx[p]);
                }
    }
    t.begin.push_back(static_cast<int32_t>(t.cidx.size()));
    return t;
}

void conv_pairs_forward(float* y, const float* x, const float* w, const float* b,
                        const ConvShape& s, const PairList& pl) {
    const Isa& isa = active_isa();
    const int64_t plane = s.Ho() * s.Wo(), in_image = s.C * s.H * s.W;
    const int64_t cost = plane * s.R * s.S * std::max<int64_t>(1, s.C);
    parallel_for(s.N * s.K, cost, [&](int64_t task) {
        const int64_t n = task / s.K, k = task % s.K;
        const int32_t p0 = pl.begin[k];
        const PlaneArgs a{x + n * in_image, w, pl.cidx.data() + p0, pl.widx.data() + p0,
                          pl.begin[k + 1] - p0, b ? b[k] : 0.0f, s.H, s.W, s.R, s.S};
        isa.conv_plane(y + task * plane, a);
    });
}

void conv_pairs_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                         const float* dy, const ConvShape& s, const PairList& pl) {
    const Isa& isa = active_isa();
    const int64_t Ho = s.Ho(), Wo = s.Wo(), plane = Ho * Wo, RS = s.R * s.S;
    const int64_t T = static_cast<int64_t>(pl.cidx.size());

    // db and dw: each output map's pairs belong to one task.
    parallel_for(s.K, s.N * plane * RS * std::max<int64_t>(1, T / std::max<int64_t>(1, s.K)),
                 [&](int64_t k) {
                     double acc = 0.0;
                     for (int64_t n = 0; n < s.N; ++n) {
                         const float* g = dy + (n * s.K + k) * plane;
                         for (int64_t i = 0; i < plane; ++i) acc += g[i];
                     }
                     db[k] = static_cast<float>(acc);
                     for (int32_t p = pl.begin[k]; p < pl.begin[k + 1]; ++p) {
                         float* dwt = dw + static_cast<int64_t>(pl.widx[p]) * RS;
                         std::fill(dwt, dwt + RS, 0.0f);
                         isa.conv_dw_plane(dwt, x + pl.cidx[p] * s.H * s.W, s.C * s.H * s.W,
                                           dy + k * plane, s.K * plane, s.N, s.H, s.W, s.R, s.S);
                     }
                 });

    // dx: forward convolution of the padded dy with the rotated kernels.
    const int64_t Hp = Ho + 2 * (s.R - 1), Wp = Wo + 2 * (s.S - 1);
    std::vector<float> dyp(static_cast<size_t>(s.N * s.K * Hp * Wp), 0.0f);
    for (int64_t nk = 0; nk < s.N * s.K; ++nk)
        for (int64_t i = 0; i < Ho; ++i)
            std::copy(dy + nk * plane + i * Wo, dy + nk * plane + (i + 1) * Wo,
                      dyp.data() + nk * Hp * Wp + (i + s.R - 1) * Wp + (s.S - 1));
    std::vector<float> wr(static_cast<size_t>(T * RS));
    for (int64_t t = 0; t < T; ++t)
        for (int64_t q = 0; q < RS; ++q) wr[t * RS + q] = w[t * RS + (RS - 1 - q)];
    const ConvShape back{s.N, s.K, Hp, Wp, s.C, s.R, s.S};
    conv_pairs_forward(dx, dyp.data(), wr.data(), nullptr, back, transpose_pairs(pl, s.C));
}

void conv2d_forward(float* y, const float* x, const float* w, const float* b, const ConvShape& s) {
    if (s.R == s.H && s.S == s.W) {  // 1x1 output: a full connection over (C,R,S)
        linear_forward(y, x, w, b, s.N, s.C * s.H * s.W, s.K);
        return;
    }
    conv_pairs_forward(y, x, w, b, s, dense_pairs(s.C, s.K));
}

void conv2d_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                     const float* dy, const ConvShape& s) {
    if (s.R == s.H && s.S == s.W) {
        linear_backward(dx, dw, db, x, w, dy, s.N, s.C * s.H * s.W, s.K);
        return;
    }
    conv_pairs_backward(dx, dw, db, x, w, dy, s, dense_pairs(s.C, s.K));
}

}  // namespace lenet_fast
