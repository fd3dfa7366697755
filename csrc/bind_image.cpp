// pybind11 glue for normalize_digits: validate with the GIL held, then release it for the
// computation, which touches no Python object.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "bind_util.h"
#include "kernels.h"

namespace lenet_fast {
namespace {

using std::to_string;

// The pixel type of a native, aligned, C-contiguous array, or a TypeError / ValueError
// naming `what` (e.g. "images[3]").
PixelType pixel_type(const py::array& a, const std::string& what) {
    const py::dtype dt = a.dtype();
    const char kind = dt.kind();
    const auto size = dt.itemsize();
    PixelType t;
    if (kind == 'u' && size == 1) {
        t = PixelType::kU8;
    } else if (kind == 'u' && size == 2) {
        t = PixelType::kU16;
    } else if (kind == 'f' && size == 4) {
        t = PixelType::kF32;
    } else if (kind == 'f' && size == 8) {
        t = PixelType::kF64;
    } else {
        throw py::type_error(what + ": expected uint8, uint16, float32 or float64 pixels, got " +
                             std::string(py::str(dt)));
    }
    const int flags = a.flags();
    require(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_,
            what + ": expected a C-contiguous array, got a strided view");
    require(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_,
            what + ": expected an aligned array, got a misaligned buffer");
    require(dt.attr("isnative").cast<bool>(),
            what + ": expected native byte order, got " + std::string(py::str(dt)));
    return t;
}

py::tuple normalize_digits_py(py::handle images, py::handle pixel_max_o, int invert) {
    require(invert == -1 || invert == 0 || invert == 1,
            "invert: expected -1 (auto), 0 or 1, got " + to_string(invert));
    std::vector<GreyImage> imgs;
    std::vector<py::array> keep;  // the arrays stay alive while the kernel runs
    if (py::isinstance<py::array>(images)) {
        auto a = py::reinterpret_borrow<py::array>(images);
        require(a.ndim() == 3, "images: expected (N,H,W) pixels or a sequence of (H,W) arrays");
        const PixelType t = pixel_type(a, "images");
        const int64_t N = a.shape(0), H = a.shape(1), W = a.shape(2);
        require(N == 0 || (H >= 1 && W >= 1), "images: expected (N,H,W) with H, W >= 1, got (" +
                                                  to_string(N) + "," + to_string(H) + "," +
                                                  to_string(W) + ")");
        const auto* base = static_cast<const char*>(a.data());
        for (int64_t i = 0; i < N; ++i)
            imgs.push_back({base + i * H * W * a.itemsize(), t, H, W, 0.0});
        keep.push_back(a);
    } else {
        if (!py::isinstance<py::sequence>(images) || py::isinstance<py::str>(images))
            throw py::type_error("images: expected an (N,H,W) array or a sequence of (H,W) arrays");
        auto seq = py::reinterpret_borrow<py::sequence>(images);
        for (size_t i = 0; i < seq.size(); ++i) {
            const std::string what = "images[" + to_string(i) + "]";
            py::object o = seq[i];
            if (!py::isinstance<py::array>(o))
                throw py::type_error(what + ": expected a numpy.ndarray (H,W)");
            auto a = py::reinterpret_borrow<py::array>(o);
            require(a.ndim() == 2 && a.shape(0) >= 1 && a.shape(1) >= 1,
                    what + ": expected an (H,W) image with H, W >= 1");
            const PixelType t = pixel_type(a, what);
            imgs.push_back({a.data(), t, a.shape(0), a.shape(1), 0.0});
            keep.push_back(a);
        }
    }
    const auto N = static_cast<int64_t>(imgs.size());
    auto pm = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(pixel_max_o);
    if (!pm) throw py::type_error("pixel_max: expected (N,) float64");
    require(pm.ndim() == 1 && pm.shape(0) == N,
            "pixel_max: expected (N,) with N=" + to_string(N) + " to match images");
    for (int64_t i = 0; i < N; ++i) {
        const double v = pm.data()[i];
        require(v > 0.0 && std::isfinite(v), "pixel_max: expected finite values > 0");
        imgs[static_cast<size_t>(i)].pixel_max = v;
    }
    py::array_t<uint8_t> out({static_cast<py::ssize_t>(N), py::ssize_t{28}, py::ssize_t{28}});
    py::array_t<int8_t> status(static_cast<py::ssize_t>(N));
    uint8_t* op = out.mutable_data();
    auto* sp = reinterpret_cast<DigitStatus*>(status.mutable_data());
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        normalize_digits(op, sp, imgs.data(), N, invert);
    }
    return py::make_tuple(out, status);
}

}  // namespace

void bind_image(py::module_& m) {
    m.def("normalize_digits", &normalize_digits_py, py::arg("images"), py::arg("pixel_max"),
          py::arg("invert"),
          "images (N,H,W) or a sequence of (H,W) arrays of uint8/uint16/float32/float64, "
          "pixel_max (N,) float64, invert -1 (auto), 0 or 1 -> (digits (N,28,28) uint8, "
          "status (N,) int8: 0 ink, 1 no ink, 2 NaN or inf, 3 outside [0, pixel_max])");
}

}  // namespace lenet_fast
