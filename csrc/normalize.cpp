// A raw grey digit into MNIST's 28x28 format, the way MNIST's digits were made (paper
// III-A) as QMNIST reconstructed it: ink bounding box; square crop of side m = max(h, w, 10),
// the short side widened symmetrically; pixel doubling while under 20 px; area-coverage
// resampling to 20x20; darkest ink 255; centre of mass with pixel centres at i + 0.5; the
// 20x20 block placed at offset int(15 - centre) per axis of the 28x28 field, clipped.
//
// Scalar C++ on purpose: the work is a few operations per input pixel, most of them zero
// (paper), so memory and branches bound it, not arithmetic.
//
// Exactness policy: reference.normalize_digit (NumPy) gives the same bytes. Both compute
// in double with the same operations in the same order: the ink values are exact
// (differences of integer or float32 pixels), the per-axis resampling weights come from
// the same formulas, every output cell sums its terms in ascending input position (a term
// the reference adds and this file skips is an exact +0.0, which changes no sum), and the
// centre of mass is integer arithmetic.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "dispatch.h"
#include "kernels.h"

namespace lenet_fast {
namespace {

constexpr int kBox = 20;    // the digit's box in MNIST: 20x20
constexpr int kField = 28;  // MNIST's field: 28x28
constexpr int kMinCrop = 10;
// QMNIST's resampler maps each input pixel onto 0.99 of its width (its "fudge"): with it,
// a pixel that straddles an output boundary gives 0.99 of its area, one that does not
// gives all of it. This aliasing shows in MNIST's digits, so it is kept.
constexpr double kFudge = 0.99;

template <class T>
const T* pixels(const GreyImage& img) {
    return static_cast<const T*>(img.data);
}

// Every pixel finite and in [0, pixel_max]? Integer pixels are finite; a uint8 or uint16
// image with the type's full range as pixel_max needs no check.
template <class T>
DigitStatus check_values(const GreyImage& img) {
    const T* p = pixels<T>(img);
    const int64_t n = img.H * img.W;
    const double pm = img.pixel_max;
    bool ok = true;
    for (int64_t i = 0; i < n; ++i) {
        const double v = static_cast<double>(p[i]);
        ok &= (v >= 0.0) & (v <= pm);  // false for NaN
    }
    if (ok) return DigitStatus::kInk;
    for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(static_cast<double>(p[i]))) return DigitStatus::kNotFinite;
    return DigitStatus::kOutOfRange;
}

// The background of an image, from its border pixels (rows 0 and H-1, columns 0 and W-1):
// level, their lower median (the ((count-1)/2)-th smallest, one of the border's own
// values), and spread, the lower median of their distances to it (the border's noise: 0
// on MNIST's black fields, a few grey levels on a scan).
struct Background {
    double level, spread;
};

double lower_median(std::vector<double>& b) {
    const auto k = static_cast<std::ptrdiff_t>((b.size() - 1) / 2);
    std::nth_element(b.begin(), b.begin() + k, b.end());
    return b[static_cast<size_t>(k)];
}

template <class T>
Background border_background(const GreyImage& img) {
    const T* p = pixels<T>(img);
    const int64_t H = img.H, W = img.W;
    std::vector<double> b;
    b.reserve(static_cast<size_t>(2 * (H + W)));
    for (int64_t j = 0; j < W; ++j) b.push_back(static_cast<double>(p[j]));
    if (H > 1)
        for (int64_t j = 0; j < W; ++j) b.push_back(static_cast<double>(p[(H - 1) * W + j]));
    for (int64_t i = 1; i + 1 < H; ++i) {
        b.push_back(static_cast<double>(p[i * W]));
        if (W > 1) b.push_back(static_cast<double>(p[i * W + W - 1]));
    }
    const double level = lower_median(b);
    for (double& v : b) v = std::fabs(v - level);
    return {level, lower_median(b)};
}

// Ink of one pixel value: (x - bg) or (bg - x) when inverted, 0 below the threshold.
struct InkOf {
    double bg, thr;
    bool inv;
    double operator()(double x) const {
        const double v = inv ? bg - x : x - bg;
        return v >= thr ? v : 0.0;
    }
};

// Where each of the n crop positions of one axis lands in the 20-pixel box: target cells
// c0 (weight w0) and c1 (weight w1, 0 when the pixel does not straddle a boundary).
struct AxisMap {
    std::vector<int> c0, c1;
    std::vector<double> w0, w1;
};

AxisMap axis_map(int64_t n) {
    AxisMap a;
    a.c0.resize(static_cast<size_t>(n));
    a.c1.resize(static_cast<size_t>(n));
    a.w0.resize(static_cast<size_t>(n));
    a.w1.resize(static_cast<size_t>(n));
    const double scale = static_cast<double>(kBox) / static_cast<double>(n);
    const double in_off = static_cast<double>(n) / 2.0, out_off = kBox / 2.0;
    for (int64_t k = 0; k < n; ++k) {
        const double x = out_off + scale * (static_cast<double>(k) - in_off);
        const double xw = x + kFudge * scale;
        const double lo = std::floor(x + 1e-11), hi = std::ceil(xw - 1e-11) - 1.0;
        const int i0 = std::min(kBox - 1, std::max(0, static_cast<int>(lo)));
        const int i1 = std::min(kBox - 1, std::max(0, static_cast<int>(hi)));
        const auto s = static_cast<size_t>(k);
        if (i0 == i1) {
            a.c0[s] = a.c1[s] = i0;
            a.w0[s] = scale;
            a.w1[s] = 0.0;
        } else {
            a.c0[s] = i0;
            a.c1[s] = i1;
            a.w0[s] = std::min(1.0, std::max(0.0, (lo + 1.0) - x));
            a.w1[s] = std::min(1.0, std::max(0.0, xw - hi));
        }
    }
    return a;
}

template <class T>
DigitStatus normalize_one(uint8_t* out, const GreyImage& img, int invert) {
    std::memset(out, 0, kField * kField);
    const int64_t H = img.H, W = img.W;
    if (H < 1 || W < 1) return DigitStatus::kNoInk;
    bool check = true;
    if constexpr (!std::is_floating_point<T>::value)
        check = img.pixel_max < static_cast<double>(std::numeric_limits<T>::max());
    if (check) {
        const DigitStatus s = check_values<T>(img);
        if (s != DigitStatus::kInk) return s;
    }
    const T* p = pixels<T>(img);
    const Background back = border_background<T>(img);
    const double bg = back.level;
    const bool inv = invert == kInvertAuto ? bg > 0.5 * img.pixel_max : invert != 0;
    const double thr = std::max(kInkThreshold * img.pixel_max, kNoiseFactor * back.spread);
    const InkOf ink{bg, thr, inv};
    // uint8: the ink of each of the 256 values, looked up
    double lut[256];
    if constexpr (std::is_same<T, uint8_t>::value)
        for (int v = 0; v < 256; ++v) lut[v] = ink(static_cast<double>(v));
    auto ink_at = [&](T x) -> double {
        if constexpr (std::is_same<T, uint8_t>::value) return lut[x];
        return ink(static_cast<double>(x));
    };
    // Ink is monotone in the pixel value: a pixel is ink iff x >= cut (x <= cut inverted).
    // For integer pixels the cut is the first (last) integer value with ink, so the test is
    // exactly ink_at(x) != 0; for floats it is that test itself.
    double cut = 0.0;
    bool any_cut = true;
    if constexpr (!std::is_floating_point<T>::value) {
        const double top_v = static_cast<double>(std::numeric_limits<T>::max());
        // the integer nearest the threshold crossing, then stepped to the exact edge
        double c = inv ? std::floor(bg - ink.thr) : std::ceil(bg + ink.thr);
        c = std::min(top_v, std::max(0.0, c));
        if (inv) {
            while (c < top_v && ink(c + 1.0) != 0.0) c += 1.0;
            while (c >= 0.0 && ink(c) == 0.0) c -= 1.0;
            any_cut = c >= 0.0;
        } else {
            while (c > 0.0 && ink(c - 1.0) != 0.0) c -= 1.0;
            while (c <= top_v && ink(c) == 0.0) c += 1.0;
            any_cut = c <= top_v;
        }
        cut = c;
    }
    if (!any_cut) return DigitStatus::kNoInk;
    auto is_ink = [&](T x) -> bool {
        if constexpr (std::is_floating_point<T>::value) return ink(static_cast<double>(x)) != 0.0;
        return inv ? static_cast<double>(x) <= cut : static_cast<double>(x) >= cut;
    };
    auto row_has_ink = [&](const T* row) -> bool {
        if constexpr (std::is_floating_point<T>::value) {
            for (int64_t j = 0; j < W; ++j)
                if (is_ink(row[j])) return true;
            return false;
        } else {
            // branch-free, so that the compiler vectorises it
            const T c = static_cast<T>(cut);
            bool any = false;
            if (inv) {
                for (int64_t j = 0; j < W; ++j) any |= row[j] <= c;
            } else {
                for (int64_t j = 0; j < W; ++j) any |= row[j] >= c;
            }
            return any;
        }
    };

    // 1. the ink bounding box [top, bottom) x [left, right)
    int64_t top = H, bottom = 0, left = W, right = 0;
    for (int64_t i = 0; i < H; ++i) {
        const T* row = p + i * W;
        if (!row_has_ink(row)) continue;
        int64_t j0 = 0;
        while (!is_ink(row[j0])) ++j0;
        int64_t j1 = W;
        while (!is_ink(row[j1 - 1])) --j1;
        top = std::min(top, i);
        bottom = i + 1;
        left = std::min(left, j0);
        right = std::max(right, j1);
    }
    if (bottom == 0) return DigitStatus::kNoInk;

    // 2. the square crop of side m, its origin moved back by half the missing width
    // (clipped at 0, as in QMNIST); pixels of the crop outside the image are 0.
    const int64_t h = bottom - top, w = right - left;
    const int64_t m = std::max(std::max(h, w), static_cast<int64_t>(kMinCrop));
    const int64_t r0 = std::max<int64_t>(0, top - (m - h) / 2);
    const int64_t q0 = std::max<int64_t>(0, left - (m - w) / 2);
    // 3. doubled while under 20 px: crop position k reads crop pixel k >> shift
    int shift = 0;
    int64_t n = m;
    while (n < kBox) {
        n *= 2;
        ++shift;
    }
    const AxisMap a = axis_map(n);

    // 4. resample, one axis at a time: tmp (h,20) along the rows, then box (20,20).
    // Along a row, cell c sums, in ascending k, the w1 share of the pixel that straddles
    // its left edge, then the w0 shares of the pixels that start in it (c0 is
    // nondecreasing in k); only the positions k in [k_lo, k_hi) read the box's columns.
    const int64_t k_lo = (left - q0) << shift, k_hi = std::min(n, (right - q0) << shift);
    int64_t kb[kBox], ke[kBox], ks[kBox];
    for (int c = 0; c < kBox; ++c) kb[c] = ke[c] = ks[c] = -1;
    for (int64_t k = k_lo; k < k_hi; ++k) {
        const auto s = static_cast<size_t>(k);
        const int c = a.c0[s];
        if (kb[c] < 0) kb[c] = k;
        ke[c] = k + 1;
        if (a.w1[s] != 0.0) ks[a.c1[s]] = k;
    }
    std::vector<double> tmp(static_cast<size_t>(h * kBox), 0.0), buf(static_cast<size_t>(w));
    for (int64_t i = top; i < bottom; ++i) {
        const T* row = p + i * W + left;
        for (int64_t j = 0; j < w; ++j) buf[static_cast<size_t>(j)] = ink_at(row[j]);
        // crop position k reads buf[(k >> shift) - off]
        const int64_t off = left - q0;
        const double* v = buf.data();
        double* t = tmp.data() + (i - top) * kBox;
        for (int c = 0; c < kBox; ++c) {
            double sum = 0.0;
            if (ks[c] >= 0) sum += v[(ks[c] >> shift) - off] * a.w1[static_cast<size_t>(ks[c])];
            for (int64_t k = kb[c]; k >= 0 && k < ke[c]; ++k)
                sum += v[(k >> shift) - off] * a.w0[static_cast<size_t>(k)];
            t[c] = sum;
        }
    }
    double box[kBox * kBox] = {};
    const int64_t kr_lo = (top - r0) << shift, kr_hi = std::min(n, (bottom - r0) << shift);
    for (int64_t k = kr_lo; k < kr_hi; ++k) {
        const double* t = tmp.data() + (r0 + (k >> shift) - top) * kBox;
        const auto s = static_cast<size_t>(k);
        double* o0 = box + a.c0[s] * kBox;
        for (int j = 0; j < kBox; ++j) o0[j] += a.w0[s] * t[j];
        if (a.w1[s] != 0.0) {
            double* o1 = box + a.c1[s] * kBox;
            for (int j = 0; j < kBox; ++j) o1[j] += a.w1[s] * t[j];
        }
    }

    // 5. to bytes, the darkest ink 255
    double mx = 0.0;
    for (double v : box) mx = std::max(mx, v);
    if (!(mx > 0.0)) return DigitStatus::kNoInk;
    const double scale = 255.0 / mx;
    uint8_t q[kBox * kBox];
    int64_t S = 0, X = 0, Y = 0;
    for (int i = 0; i < kBox; ++i)
        for (int j = 0; j < kBox; ++j) {
            const double v = std::floor(box[i * kBox + j] * scale + 0.5);
            const int b = v < 0.0 ? 0 : v > 255.0 ? 255 : static_cast<int>(v);
            q[i * kBox + j] = static_cast<uint8_t>(b);
            // 6. centre of mass, in half pixels: sum b (2i + 1) = 2 sum b (i + 0.5)
            S += b;
            X += b * (2 * i + 1);
            Y += b * (2 * j + 1);
        }
    // 7. offset int(15 - centre) = trunc((30 S - X) / (2 S)), exactly (C++ division
    // truncates toward zero, as the cast of a float does)
    const int64_t oi = (30 * S - X) / (2 * S), oj = (30 * S - Y) / (2 * S);
    for (int i = 0; i < kBox; ++i) {
        const int64_t r = oi + i;
        if (r < 0 || r >= kField) continue;
        for (int j = 0; j < kBox; ++j) {
            const int64_t c = oj + j;
            if (c >= 0 && c < kField) out[r * kField + c] = q[i * kBox + j];
        }
    }
    return DigitStatus::kInk;
}

}  // namespace

DigitStatus normalize_digit(uint8_t* out, const GreyImage& img, int invert) {
    switch (img.type) {
        case PixelType::kU8: return normalize_one<uint8_t>(out, img, invert);
        case PixelType::kU16: return normalize_one<uint16_t>(out, img, invert);
        case PixelType::kF32: return normalize_one<float>(out, img, invert);
        case PixelType::kF64: return normalize_one<double>(out, img, invert);
    }
    std::memset(out, 0, kField * kField);
    return DigitStatus::kOutOfRange;
}

void normalize_digits(uint8_t* out, DigitStatus* status, const GreyImage* imgs, int64_t N,
                      int invert) {
    int64_t pixels_total = 0;
    for (int64_t i = 0; i < N; ++i) pixels_total += imgs[i].H * imgs[i].W;
    const int64_t cost = N > 0 ? 4 * (pixels_total / N) + 2000 : 0;
    // each image writes only its own 28x28 and status: no race, any thread count
    parallel_for(N, cost, [&](int64_t i) {
        status[i] = normalize_digit(out + i * kField * kField, imgs[i], invert);
    });
}

}  // namespace lenet_fast
