// Dense valid convolution (C1, C5) and the pair-list machinery it shares with C3.
//
// Forward: one task per (image, output map), each a call of the ISA's conv_plane.
// Backward, as race-free loops (the result does not depend on the thread count):
//   db: parallel over blocks of eight output maps, dw: parallel over output maps, each
//       summing over the batch in a fixed order;
//   dx: a forward convolution of dy, zero-padded by R-1 rows and S-1 columns, with the
//       kernels rotated by 180 degrees and the connection list transposed; parallel over
//       (image, input map).
// A kernel that covers the whole input (C5 on a 5x5 map) is a full connection: those calls
// go to linear.cpp, whose loops keep every SIMD lane busy on a 1x1 output.
#include <algorithm>
#include <vector>

#include "backprop.h"
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
    const KernelTable& kt = active_kernels();
    const int64_t plane = s.Ho() * s.Wo(), in_image = s.C * s.H * s.W;
    const int64_t cost = plane * s.R * s.S * std::max<int64_t>(1, s.C);
    parallel_for(s.N * s.K, cost, [&](int64_t task) {
        const int64_t n = task / s.K, k = task % s.K;
        const int32_t p0 = pl.begin[k];
        const PlaneArgs a{x + n * in_image,
                          w,
                          pl.cidx.data() + p0,
                          pl.widx.data() + p0,
                          pl.begin[k + 1] - p0,
                          b ? b[k] : 0.0f,
                          s.H,
                          s.W,
                          s.R,
                          s.S};
        kt.conv_plane(y + task * plane, a);
    });
}

namespace {

// db[k0 .. k0+M-1] = the sums of dy's maps (N,K,plane) over n, then i, in double. M maps at
// once: M independent chains of additions, where one map at a time would wait on the add
// latency at every element (4,704 of them for C1 at batch 1).
constexpr int64_t kSumMaps = 8;

template <int M>
void sum_maps_fixed(float* db, const float* dy, int64_t k0, int64_t N, int64_t K, int64_t plane) {
    double acc[M] = {};
    for (int64_t n = 0; n < N; ++n) {
        const float* g = dy + (n * K + k0) * plane;
        for (int64_t i = 0; i < plane; ++i)
            for (int m = 0; m < M; ++m) acc[m] += g[m * plane + i];
    }
    for (int m = 0; m < M; ++m) db[k0 + m] = static_cast<float>(acc[m]);
}

void sum_maps(float* db, const float* dy, int64_t k0, int64_t count, int64_t N, int64_t K,
              int64_t plane) {
    switch (count) {
        case 8: sum_maps_fixed<8>(db, dy, k0, N, K, plane); break;
        case 7: sum_maps_fixed<7>(db, dy, k0, N, K, plane); break;
        case 6: sum_maps_fixed<6>(db, dy, k0, N, K, plane); break;
        case 5: sum_maps_fixed<5>(db, dy, k0, N, K, plane); break;
        case 4: sum_maps_fixed<4>(db, dy, k0, N, K, plane); break;
        case 3: sum_maps_fixed<3>(db, dy, k0, N, K, plane); break;
        case 2: sum_maps_fixed<2>(db, dy, k0, N, K, plane); break;
        default: sum_maps_fixed<1>(db, dy, k0, N, K, plane); break;
    }
}

}  // namespace

void conv_pairs_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                         const float* dy, const ConvShape& s, const PairList& pl) {
    const KernelTable& kt = active_kernels();
    const int64_t Ho = s.Ho(), Wo = s.Wo(), plane = Ho * Wo, RS = s.R * s.S;
    const int64_t T = static_cast<int64_t>(pl.cidx.size());

    // db: per output map, a double sum over the batch and the plane in a fixed order.
    parallel_for((s.K + kSumMaps - 1) / kSumMaps, s.N * plane * kSumMaps, [&](int64_t blk) {
        sum_maps(db, dy, blk * kSumMaps, std::min(kSumMaps, s.K - blk * kSumMaps), s.N, s.K, plane);
    });

    // dw: each output map's pairs belong to one task.
    parallel_for(s.K, s.N * plane * RS * std::max<int64_t>(1, T / std::max<int64_t>(1, s.K)),
                 [&](int64_t k) {
                     for (int32_t p = pl.begin[k]; p < pl.begin[k + 1]; ++p) {
                         float* dwt = dw + static_cast<int64_t>(pl.widx[p]) * RS;
                         std::fill(dwt, dwt + RS, 0.0f);
                         kt.conv_dw_plane(dwt, x + pl.cidx[p] * s.H * s.W, s.C * s.H * s.W,
                                          dy + k * plane, s.K * plane, s.N, s.H, s.W, s.R, s.S);
                     }
                 });
    if (dx == nullptr) return;

    // dx: forward convolution of the zero-padded dy with the rotated kernels, over the
    // connections seen from the inputs.
    const int64_t Hp = Ho + 2 * (s.R - 1), Wp = Wo + 2 * (s.S - 1);
    std::vector<float> dyp(static_cast<size_t>(s.N * s.K * Hp * Wp), 0.0f);
    for (int64_t nk = 0; nk < s.N * s.K; ++nk)
        pad_plane(dyp.data() + nk * Hp * Wp, Wp, dy + nk * plane, Ho, Wo, s.R, s.S);
    std::vector<float> wr(static_cast<size_t>(T * RS));
    rotate_kernels(wr.data(), w, T, RS);
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
